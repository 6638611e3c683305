package integration_tests

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

// Secrets of the credential proxy fixture. Tests grep the logs for each.
const (
	credSubnetSecret   = "hush-hush-im-invisible"
	credGitHubAppID    = "4242"
	credMSTeamsSecret  = "msteams-client-secret-value"
	credGitLabSecret   = "gitlab-client-secret-value"
	credDiscordToken   = "discord-bot-token-value"
	credSlackToken     = "xoxb-slack-token-value"
	credExpiredGitHub  = "ghs_expired_token_value"
	credGitLabRefresh  = "glrt_refresh_token_value"
	credGitLabRevoked  = "glat_revoked_token_value"
	credMSTeamsClient  = "msteams-client-id"
	credGitLabClientID = "gitlab-client-id"
)

var (
	credKeyOnce sync.Once
	credKey     *rsa.PrivateKey
)

func credGitHubKey(t *testing.T) *rsa.PrivateKey {
	credKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		credKey = k
	})
	return credKey
}

// fakeThirdParty plays GitHub, GitLab, Slack, MS Teams and Discord on
// 127.0.0.1: token endpoints that mint numbered tokens (and count), API
// endpoints that accept only the tokens minted or seeded as good, and a
// record of every request.
type fakeThirdParty struct {
	srv        *httptest.Server
	mu         sync.Mutex
	seen       []seenRequest
	bodies     []string
	githubMint atomic.Int64
	gitlabMint atomic.Int64
	teamsMint  atomic.Int64
	mintDelay  atomic.Int64 // nanoseconds each token endpoint waits
	tokenFail  atomic.Int64 // status the token endpoints answer, 0 = success
	revoked    sync.Map     // tokens the API answers 401 to
	slow       atomic.Int64 // nanoseconds /slow waits
}

func newFakeThirdParty(t *testing.T) *fakeThirdParty {
	t.Helper()
	f := &fakeThirdParty{}
	key := &credGitHubKey(t).PublicKey
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.seen = append(f.seen, seenRequest{Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(), BodyLen: len(body)})
		f.bodies = append(f.bodies, string(body))
		f.mu.Unlock()
		isToken := strings.HasSuffix(r.URL.Path, "/access_tokens") || r.URL.Path == "/oauth/token" || r.URL.Path == "/teams-token"
		if isToken {
			time.Sleep(time.Duration(f.mintDelay.Load()))
			if code := f.tokenFail.Load(); code != 0 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(int(code))
				fmt.Fprintf(w, `{"error":"invalid_grant","error_description":"refresh token %s is revoked"}`, credGitLabRefresh)
				return
			}
		}
		switch {
		case strings.HasPrefix(r.URL.Path, "/app/installations/") && strings.HasSuffix(r.URL.Path, "/access_tokens"):
			raw := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			tok, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return key, nil }, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(credGitHubAppID))
			if err != nil || !tok.Valid || r.Method != http.MethodPost {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			n := f.githubMint.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"token":"ghs_minted_%d","expires_at":"%s"}`, n, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		case r.URL.Path == "/oauth/token":
			if r.PostForm == nil {
				_ = r.ParseForm()
			}
			form, _ := url.ParseQuery(string(body))
			if form.Get("grant_type") != "refresh_token" || form.Get("client_secret") != credGitLabSecret || form.Get("refresh_token") == "" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			n := f.gitlabMint.Add(1)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"access_token":"glat_minted_%d","refresh_token":"glrt_minted_%d","token_type":"Bearer","expires_in":7200}`, n, n)
		case r.URL.Path == "/teams-token":
			form, _ := url.ParseQuery(string(body))
			if form.Get("grant_type") != "client_credentials" || form.Get("client_secret") != credMSTeamsSecret || form.Get("scope") != "https://api.botframework.com/.default" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			n := f.teamsMint.Add(1)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"access_token":"teams_minted_%d","token_type":"Bearer","expires_in":3600}`, n)
		case strings.HasSuffix(r.URL.Path, "/slow"):
			time.Sleep(time.Duration(f.slow.Load()))
			fmt.Fprint(w, "finally")
		default:
			auth := r.Header.Get("Authorization")
			if _, bad := f.revoked.Load(strings.TrimPrefix(auth, "Bearer ")); bad || auth == "" {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"message":"Bad credentials"}`)
				return
			}
			if strings.HasSuffix(r.URL.Path, "/missing") {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprint(w, `{"message":"Not Found"}`)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Upstream", "yes")
			w.Header().Set(subnet.HeaderInternalProxyFailure, "true")
			w.Header().Set("X-Sentry-Subnet-Signature", "upstream-copy")
			w.WriteHeader(http.StatusOK)
			_ = json.NewEncoder(w).Encode(map[string]string{"auth": auth, "uri": r.RequestURI, "method": r.Method, "body": string(body)})
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeThirdParty) URL() string { return f.srv.URL }

func (f *fakeThirdParty) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seen)
}

func (f *fakeThirdParty) last(t *testing.T) (seenRequest, string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		t.Fatal("the third party received no request")
	}
	return f.seen[len(f.seen)-1], f.bodies[len(f.bodies)-1]
}

// credSetup is one or more running binaries with sentry_cred_proxy in
// front of a fake control silo, sharing one database seeded with one
// integration per provider.
type credSetup struct {
	instances []*harness.Caddy
	bases     []string
	db        *sql.DB
	tp        *fakeThirdParty
	control   *fakeUpstream
	storage   string
	storageDB *sql.DB // the storage database when it is not db
	client    *http.Client
}

type credOptions struct {
	dsn       string // PostgreSQL storage when set, else SQLite
	instances int    // [1]
	mode      string // sentry_silo mode
	noSecret  bool   // leave subnet_secret out
	handler   string // replaces the sentry_cred_proxy block's body
	// control, when set, is the DSN of a database that plays Sentry's
	// control database: the test creates its tables as Sentry does,
	// the instances read it through directory_dsn, and the fixture is
	// seeded (and read back) there; dsn must then be set too.
	control string
}

func newCredSetup(t *testing.T, opts credOptions) *credSetup {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binary; left out under -short")
	}
	s := &credSetup{tp: newFakeThirdParty(t), control: newFakeUpstream(t, "control")}
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "github.pem")
	der := x509.MarshalPKCS1PrivateKey(credGitHubKey(t))
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	driver, source := "sqlite", ""
	if opts.dsn != "" {
		s.storage = "postgres " + opts.dsn
		driver, source = "pgx", opts.dsn
	} else {
		path := filepath.Join(dir, "silo.db")
		s.storage = "sqlite " + path
		source = path + "?_pragma=busy_timeout(10000)"
	}
	handler := opts.handler
	if handler == "" {
		handler = fmt.Sprintf(`		timeout 1s 2s
		allow_host 127.0.0.1
		github_app_id %s
		github_private_key {file.%s}
		msteams_client_id %s
		msteams_client_secret {env.SILO_TEST_MSTEAMS_SECRET}
		msteams_token_url %s/teams-token
		oauth gitlab %s {env.SILO_TEST_GITLAB_SECRET} %s/oauth/token
		discord_bot_token {env.SILO_TEST_DISCORD_TOKEN}`, credGitHubAppID, keyPath, credMSTeamsClient, s.tp.URL(), credGitLabClientID, s.tp.URL())
	}
	if opts.control != "" {
		createSentryControlTables(t, opts.control)
	}
	n := opts.instances
	if n == 0 {
		n = 1
	}
	env := []string{"SILO_TEST_SUBNET_SECRET=" + credSubnetSecret, "SILO_TEST_MSTEAMS_SECRET=" + credMSTeamsSecret,
		"SILO_TEST_GITLAB_SECRET=" + credGitLabSecret, "SILO_TEST_DISCORD_TOKEN=" + credDiscordToken}
	for i := 0; i < n; i++ {
		// The region is a reserved port nobody listens on: the
		// credential proxy never calls it.
		admin, site, region := harness.ReservePort(t), harness.ReservePort(t), harness.ReservePort(t)
		mode, secret := "", "\t\tsubnet_secret {env.SILO_TEST_SUBNET_SECRET}\n"
		if opts.mode != "" {
			mode = "\t\tmode " + opts.mode + "\n"
		}
		if opts.noSecret {
			secret = ""
		}
		directory := ""
		if opts.control != "" {
			directory = "\t\tdirectory_dsn " + opts.control + "\n"
		}
		caddyfile := fmt.Sprintf(`{
%s	sentry_silo {
%s%s		storage %s
%s		region us %s
		directory_cache 1s 1s
		drainer {
			off
		}
	}
}
http://%s {
	sentry_cred_proxy {
%s
	}
	reverse_proxy %s
}
`, harness.GlobalOptions(admin), mode, secret, s.storage, directory, region.URL(), site.Addr, handler, s.control.Host())
		s.instances = append(s.instances, harness.Start(t, admin, caddyfile, env...))
		s.bases = append(s.bases, site.URL())
	}
	db, err := sql.Open(driver, source)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s.db = db
	if opts.control != "" {
		s.storageDB = db
		if s.db, err = sql.Open("pgx", opts.control); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.db.Close() })
	}
	s.client = &http.Client{
		Timeout:       30 * time.Second,
		Transport:     &http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(s.client.CloseIdleConnections)
	if opts.mode != "monolith" { // monolith mode creates no tables
		s.seed(t)
	}
	return s
}

// Organization integrations of the fixture.
const (
	oiSlack          = 110
	oiGitHub         = 120
	oiGitLab         = 130
	oiGitLabExpired  = 131 // identity 302, expired
	oiMSTeams        = 140
	oiDiscord        = 150
	oiSlackDisabled  = 160 // its integration is disabled
	oiSlackOIOff     = 161 // the organization integration is disabled
	oiJira           = 170
	oiGitLabLoopback = 180 // metadata names localhost, not allow_host
	oiGitLabMetadata = 181 // metadata names the cloud metadata address
)

func (s *credSetup) seed(t *testing.T) {
	t.Helper()
	waitForTables(t, s.db, 30*time.Second, s.instances[0].Logs, "sentry_identity", "sentry_organizationintegration")
	tpPort := strings.TrimPrefix(s.tp.URL(), "http://127.0.0.1:")
	mustExec(t, s.db, `INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES (1, 'acme', 'us', 0)`)
	rows := []struct {
		id, oi            int
		provider, ext, md string
		status, oiStatus  int
		auth              int
	}{
		{10, oiSlack, "slack", "T1", `{"access_token":"` + credSlackToken + `"}`, 0, 0, 0},
		{20, oiGitHub, "github", "555", `{"access_token":"` + credExpiredGitHub + `","expires_at":"2020-01-01T00:00:00","sender":{"id":1,"login":"octo"}}`, 0, 0, 0},
		{30, oiGitLab, "gitlab", "gitlab.example:grp", `{"base_url":"` + s.tp.URL() + `","domain_name":"gitlab.example/grp"}`, 0, 0, 300},
		{31, oiGitLabExpired, "gitlab", "gitlab.example:grp2", `{"base_url":"` + s.tp.URL() + `"}`, 0, 0, 302},
		{40, oiMSTeams, "msteams", "team-1", `{"service_url":"` + s.tp.URL() + `/teams/","access_token":"teams_old","expires_at":1}`, 0, 0, 0},
		{50, oiDiscord, "discord", "G1", `{}`, 0, 0, 0},
		{60, oiSlackDisabled, "slack", "T2", `{"access_token":"x"}`, 1, 0, 0},
		{61, oiSlackOIOff, "slack", "T3", `{"access_token":"x"}`, 0, 1, 0},
		{70, oiJira, "jira", "jira-key", `{}`, 0, 0, 0},
		{80, oiGitLabLoopback, "gitlab", "loop:grp", `{"base_url":"http://localhost:` + tpPort + `"}`, 0, 0, 301},
		{81, oiGitLabMetadata, "gitlab", "meta:grp", `{"base_url":"http://169.254.169.254"}`, 0, 0, 301},
	}
	for _, r := range rows {
		mustExec(t, s.db, fmt.Sprintf(`INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES (%d, '%s', '%s', 'x', '%s', %d)`,
			r.id, r.provider, r.ext, r.md, r.status))
		auth := "NULL"
		if r.auth != 0 {
			auth = fmt.Sprint(r.auth)
		}
		mustExec(t, s.db, fmt.Sprintf(`INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status, default_auth_id) VALUES (%d, 1, %d, %d, %s)`,
			r.oi, r.id, r.oiStatus, auth))
	}
	mustExec(t, s.db, fmt.Sprintf(`INSERT INTO sentry_identity (id, data) VALUES (300, '{"access_token":"glat_expired","refresh_token":"%s","expires":1,"scopes":["api"]}'), (301, '{"access_token":"glat_fine","expires":9999999999}'), (302, '{"access_token":"glat_expired2","refresh_token":"glrt_2","expires":1}')`, credGitLabRefresh))
}

// call sends a signed proxy request to instance i, through the exported
// subnet.SignRequest a Go region would use.
func (s *credSetup) call(t *testing.T, i int, method, thirdPartyURL, base string, oi int, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, thirdPartyURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body = http.NoBody
	}
	for k, v := range header {
		req.Header[k] = v
	}
	control, _ := url.Parse(s.bases[i])
	if err := subnet.SignRequest(req, control, credSubnetSecret, base, fmt.Sprint(oi)); err != nil {
		t.Fatal(err)
	}
	return s.send(t, req)
}

// raw sends a request to instance 0's proxy path with exactly these
// headers (for malformed requests).
func (s *credSetup) raw(t *testing.T, method string, header http.Header, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.bases[0]+subnet.ProxyPath, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	return s.send(t, req)
}

func (s *credSetup) send(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, b
}

// signedHeader builds the subnet headers by hand.
func signedHeader(base, path, oi, body string) http.Header {
	h := http.Header{}
	h.Set(subnet.HeaderBaseURL, base)
	h.Set(subnet.HeaderPath, path)
	h.Set(subnet.HeaderOrganizationIntegration, oi)
	h.Set(subnet.HeaderSignature, subnet.Sign(credSubnetSecret, base, path, oi, []byte(body)))
	return h
}

func wantProxyFailure(t *testing.T, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status || len(body) != 0 || resp.Header.Get(subnet.HeaderInternalProxyFailure) != "true" {
		t.Fatalf("got %d %q failure=%q; want %d, empty body, failure=true", resp.StatusCode, body, resp.Header.Get(subnet.HeaderInternalProxyFailure), status)
	}
}

// metadataOf reads sentry_integration.metadata back from the database.
func (s *credSetup) metadataOf(t *testing.T, id int) map[string]any {
	t.Helper()
	return s.jsonColumn(t, `SELECT metadata FROM sentry_integration WHERE id = $1`, id)
}

func (s *credSetup) identityOf(t *testing.T, id int) map[string]any {
	t.Helper()
	return s.jsonColumn(t, `SELECT data FROM sentry_identity WHERE id = $1`, id)
}

func (s *credSetup) jsonColumn(t *testing.T, q string, id int) map[string]any {
	t.Helper()
	var raw string
	if err := s.db.QueryRow(q, id).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return m
}

func (s *credSetup) logs() string {
	var b strings.Builder
	for _, c := range s.instances {
		b.WriteString(c.Logs())
	}
	return b.String()
}

// sentryControlTables creates the directory tables the way Sentry's own
// migrations shape them on a control database: metadata is jsonb, the
// models' other columns are there (NOT NULL ones with defaults, so the
// fixture's inserts need not name them), and the keys are Sentry's, not
// the ones our own directory.sql would choose.
const sentryControlTables = `
CREATE TABLE sentry_organizationmapping (
	id bigserial PRIMARY KEY,
	organization_id bigint NOT NULL UNIQUE,
	slug varchar(50) NOT NULL UNIQUE,
	name varchar(64) NOT NULL DEFAULT '',
	date_created timestamptz NOT NULL DEFAULT now(),
	customer_id varchar(255),
	verified boolean NOT NULL DEFAULT false,
	idempotency_key varchar(48) NOT NULL DEFAULT '',
	region_name varchar(48) NOT NULL,
	status integer,
	allow_joinleave boolean NOT NULL DEFAULT false,
	enhanced_privacy boolean NOT NULL DEFAULT false,
	require_2fa boolean NOT NULL DEFAULT false,
	early_adopter boolean NOT NULL DEFAULT false,
	disable_shared_issues boolean NOT NULL DEFAULT false,
	disable_new_visibility_features boolean NOT NULL DEFAULT false,
	require_email_verification boolean NOT NULL DEFAULT false,
	codecov_access boolean NOT NULL DEFAULT false
);
CREATE TABLE sentry_integration (
	id bigserial PRIMARY KEY,
	provider varchar(64) NOT NULL,
	external_id varchar(64) NOT NULL,
	name varchar(200) NOT NULL,
	metadata jsonb NOT NULL DEFAULT '{}',
	status integer DEFAULT 0,
	date_added timestamptz DEFAULT now(),
	date_updated timestamptz NOT NULL DEFAULT now(),
	UNIQUE (provider, external_id)
);
CREATE TABLE sentry_organizationintegration (
	id bigserial PRIMARY KEY,
	organization_id bigint NOT NULL,
	integration_id bigint NOT NULL REFERENCES sentry_integration (id) DEFERRABLE INITIALLY DEFERRED,
	config jsonb NOT NULL DEFAULT '{}',
	default_auth_id bigint,
	date_added timestamptz DEFAULT now(),
	date_updated timestamptz NOT NULL DEFAULT now(),
	status integer NOT NULL DEFAULT 0,
	grace_period_end timestamptz,
	UNIQUE (organization_id, integration_id)
);
CREATE TABLE sentry_identity (
	id bigserial PRIMARY KEY,
	idp_id bigint NOT NULL DEFAULT 1,
	user_id bigint NOT NULL DEFAULT 1,
	external_id text NOT NULL DEFAULT '',
	data text NOT NULL DEFAULT '{}',
	status integer NOT NULL DEFAULT 0,
	scopes text[] NOT NULL DEFAULT '{}',
	date_verified timestamptz NOT NULL DEFAULT now(),
	date_added timestamptz DEFAULT now()
);
CREATE TABLE sentry_sentryapp (
	id bigserial PRIMARY KEY,
	application_id bigint,
	proxy_user_id bigint,
	owner_id bigint NOT NULL,
	name text NOT NULL DEFAULT '',
	slug varchar(64) NOT NULL UNIQUE,
	status integer NOT NULL DEFAULT 0,
	uuid varchar(64) NOT NULL DEFAULT '',
	events text[] NOT NULL DEFAULT '{}',
	date_added timestamptz NOT NULL DEFAULT now(),
	date_updated timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sentry_sentryappinstallation (
	id bigserial PRIMARY KEY,
	sentry_app_id bigint NOT NULL,
	organization_id bigint NOT NULL,
	uuid varchar(64) NOT NULL,
	status integer NOT NULL DEFAULT 0,
	date_added timestamptz NOT NULL DEFAULT now(),
	date_updated timestamptz NOT NULL DEFAULT now(),
	date_deleted timestamptz
);
CREATE TABLE sentry_projectkeymapping (
	id bigserial PRIMARY KEY,
	project_key_id bigint NOT NULL UNIQUE,
	public_key varchar(32) NOT NULL,
	region_name varchar(48) NOT NULL,
	date_updated timestamptz NOT NULL DEFAULT now()
);`

// createSentryControlTables gives a database the tables of a Sentry
// control database (sentryControlTables); skip names tables to leave out.
func createSentryControlTables(t *testing.T, dsn string, skip ...string) {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, stmt := range strings.Split(sentryControlTables, ";") {
		stmt = strings.TrimSpace(stmt)
		if stmt == "" {
			continue
		}
		leave := false
		for _, name := range skip {
			leave = leave || strings.HasPrefix(stmt, "CREATE TABLE "+name+" ")
		}
		if !leave {
			mustExec(t, db, stmt)
		}
	}
}
