package integration_tests

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

// The topology tests run the README's production shape on the real
// binary: our tables in one PostgreSQL database (storage, migrate on),
// Sentry's control tables in another (directory_dsn) on a second server,
// created as Sentry creates them (testdata/sentry_control_schema.sql), and
// two Caddy instances sharing both, each with capture, the credential
// proxy, the gateway and the drainer. Fake regions record every delivery
// byte for byte; a fake GitHub and GitLab mint tokens per installation
// and accept only the current ones.

// The directory of the fixture, in the control database only.
const (
	// Organization ids as large as sentry.io's (beyond int32).
	topoOrgUS int64 = 4505000000000001 // acme, region us
	topoOrgDE int64 = 4505000000000002 // globex, region de

	topoInstallBoth = "7001" // GitHub installation in both organizations
	topoInstallUS   = "7002" // GitHub installation in acme only
	topoGitLab      = "gitlab"

	topoIntegrationBoth   = 9001
	topoIntegrationUS     = 9002
	topoIntegrationGitLab = 9003

	topoOIBothUS = 9101 // integration 9001 in acme
	topoOIBothDE = 9102 // integration 9001 in globex
	topoOIUS     = 9103 // integration 9002 in acme
	topoOIGitLab = 9104 // integration 9003 in globex, identity 9201

	topoIdentityGitLab = 9201

	topoAppInstallUS = "0b7d4f4e-6a52-4c0e-9a59-3c4f1f6f0001" // in acme
	topoAppInstallDE = "0b7d4f4e-6a52-4c0e-9a59-3c4f1f6f0002" // in globex
	topoKeyUS        = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
	topoKeyDE        = "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4"

	// Tokens: the seeded ones, and the one a stale copy in the storage
	// database holds.
	topoExpiredBoth   = "ghs_7001_seeded_expired"
	topoSeededUS      = "ghs_7002_seeded_valid"
	topoStaleCopy     = "ghs_7002_stale_storage_copy"
	topoGitLabExpired = "glat_seeded_expired"
	topoGitLabRefresh = "glrt_seeded"

	// The GitHub App's webhook secret: the regions check
	// X-Hub-Signature-256 against the body they receive, as Sentry does.
	topoWebhookSecret = "topology-github-webhook-secret"
	topoHookPath      = "/extensions/github/webhook/"
)

// topoRegionsOf is where a GitHub installation's webhooks go.
var topoRegionsOf = map[string][]string{topoInstallBoth: {"us", "de"}, topoInstallUS: {"us"}}

var (
	topoControlOnce    sync.Once
	topoControlCluster *pgtest.Cluster
	topoControlErr     error
)

// topoControlDSN returns a new database for Sentry's tables on a server of
// its own (started once per test process and removed when it exits), so
// the two DSNs differ in port as well as in database name. With
// SILO_TEST_DATABASE_URL set, both databases live on that server.
func topoControlDSN(t *testing.T) string {
	t.Helper()
	if os.Getenv(pgtest.EnvURL) != "" {
		return pgtest.DSN(t)
	}
	topoControlOnce.Do(func() {
		topoControlCluster, topoControlErr = pgtest.StartCluster(pgtest.Options{})
	})
	if topoControlErr != nil {
		t.Fatalf("no PostgreSQL server for the control database: %v", topoControlErr)
	}
	return topoControlCluster.DSN(t)
}

// topology is the running production shape.
type topology struct {
	storageDSN, controlDSN string
	listenDSN              string // "" for none
	storageName            string
	storage, control       *sql.DB
	us, de                 *topoRegion
	tp                     *topoThirdParty
	app                    *fakeUpstream // the control silo application
	instances              []*harness.Caddy
	bases                  []string
	caddyfiles             []string
	client                 *http.Client
	// controlSchema is the control database's schema before the
	// instances started.
	controlSchema string
}

func newTopology(t *testing.T) *topology {
	t.Helper()
	return newTopologyWith(t, topoShape{})
}

// topoShape is where the databases of a topology are, for the tests of
// PgBouncer and replicas; the zero value is the README's shape: a fresh
// storage database, and the control database on a server of its own.
type topoShape struct {
	// storage and control are the DSNs the instances get; storageAdmin
	// and controlAdmin are the test's own way in (the primary, not the
	// pooler), [storage, control].
	storage, storageAdmin string
	control, controlAdmin string
	// listen is listen_dsn ["": none].
	listen string
	// beforeStart runs once the control database is seeded, before the
	// instances start (a replica test waits there for the standby).
	beforeStart func(t *testing.T)
}

func newTopologyWith(t *testing.T, shape topoShape) *topology {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binary on PostgreSQL; left out under -short")
	}
	if shape.storage == "" {
		shape.storage = pgtest.DSN(t)
	}
	if shape.control == "" {
		shape.control = topoControlDSN(t)
	}
	top := &topology{storageDSN: shape.storage, controlDSN: shape.control, listenDSN: shape.listen}
	u, err := url.Parse(top.storageDSN)
	if err != nil {
		t.Fatal(err)
	}
	top.storageName = strings.TrimPrefix(u.Path, "/")
	top.storage = topoOpen(t, cmp.Or(shape.storageAdmin, top.storageDSN))
	top.control = topoOpen(t, cmp.Or(shape.controlAdmin, top.controlDSN))
	schema, err := os.ReadFile(filepath.Join("testdata", "sentry_control_schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, top.control, string(schema))
	top.us, top.de = newTopoRegion(t, "us"), newTopoRegion(t, "de")
	top.tp = newTopoThirdParty(t)
	top.app = newFakeUpstream(t, "control")
	seedTopologyControl(t, top.control, top.tp.URL())
	top.controlSchema = topoSchema(t, top.control)
	if shape.beforeStart != nil {
		shape.beforeStart(t)
	}

	secrets := t.TempDir()
	write := func(name, value string) string {
		p := filepath.Join(secrets, name)
		if err := os.WriteFile(p, []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	der := x509.MarshalPKCS1PrivateKey(credGitHubKey(t))
	files := topoSecretFiles{
		subnet:    write("sentry_subnet_secret", credSubnetSecret),
		slack:     write("slack_signing_secret", captureSlackSecret),
		githubKey: write("github_app.pem", string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}))),
		gitlab:    write("gitlab_client_secret", credGitLabSecret),
	}
	for i := 0; i < 2; i++ {
		// Each instance names itself to the storage server, so the
		// tests can tell its sessions apart in pg_stat_activity.
		env := []string{"SILO_DATABASE_URL=" + topoWithParam(top.storageDSN, "application_name", topoApplicationName(i)),
			"SENTRY_CONTROL_DATABASE_URL=" + top.controlDSN, "SILO_LISTEN_URL=" + top.listenDSN}
		admin, site := harness.ReservePort(t), harness.ReservePort(t)
		caddyfile := top.caddyfile(admin, site, files)
		top.instances = append(top.instances, harness.Start(t, admin, caddyfile, env...))
		top.bases = append(top.bases, site.URL())
		top.caddyfiles = append(top.caddyfiles, caddyfile)
	}
	waitForTables(t, top.storage, 60*time.Second, top.logs, "silo_webhook_payload", "silo_dead_letter")
	top.client = &http.Client{
		Timeout:       60 * time.Second,
		Transport:     &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(top.client.CloseIdleConnections)
	return top
}

// topoApplicationName is instance i's application_name on the storage
// server.
func topoApplicationName(i int) string { return fmt.Sprintf("topology-instance-%d", i) }

func topoWithParam(dsn, key, value string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

type topoSecretFiles struct{ subnet, slack, githubKey, gitlab string }

// caddyfile is the README's production Caddyfile with loopback addresses,
// the test's secrets files, allow_host for the fake third party, and the
// global metrics option (the tests read requests in flight from it).
func (top *topology) caddyfile(admin, site *harness.Port, f topoSecretFiles) string {
	return fmt.Sprintf(`{
%s	metrics
	sentry_silo {
		storage postgres {env.SILO_DATABASE_URL}
		directory_dsn {env.SENTRY_CONTROL_DATABASE_URL}
%s		migrate on
		region us %s
		region de %s
		default_region us
		subnet_secret {file.%s}
	}
}

http://%s {
	sentry_webhook_capture {
		slack_signing_secret {file.%s}
	}
	sentry_cred_proxy {
		allow_host 127.0.0.1
		github_app_id %s
		github_private_key {file.%s}
		oauth gitlab %s {file.%s} %s/oauth/token
	}
	sentry_region_route
	reverse_proxy %s
}
`, harness.GlobalOptions(admin), top.listenLine(), top.us.srv.URL, top.de.srv.URL, f.subnet,
		site.Addr, f.slack, credGitHubAppID, f.githubKey, credGitLabClientID, f.gitlab, top.tp.URL(), top.app.Host())
}

// listenLine is the listen_dsn line of the Caddyfile, when there is one.
func (top *topology) listenLine() string {
	if top.listenDSN == "" {
		return ""
	}
	return "\t\tlisten_dsn {env.SILO_LISTEN_URL}\n"
}

func (top *topology) logs() string {
	var b strings.Builder
	for i, c := range top.instances {
		fmt.Fprintf(&b, "--- instance %d ---\n%s", i, c.Logs())
	}
	return b.String()
}

func topoOpen(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(8)
	t.Cleanup(func() { db.Close() })
	return db
}

// seedTopologyControl fills Sentry's tables as Sentry would: every NOT
// NULL column named (Django keeps the defaults in Python).
func seedTopologyControl(t *testing.T, db *sql.DB, tpURL string) {
	t.Helper()
	future := time.Now().UTC().Add(8 * time.Hour).Format("2006-01-02T15:04:05")
	mustExec(t, db, `INSERT INTO sentry_organizationmapping (organization_id, slug, name, date_created, customer_id, verified,
		idempotency_key, region_name, status, allow_joinleave, enhanced_privacy, require_2fa, early_adopter, disable_shared_issues,
		disable_new_visibility_features, require_email_verification, codecov_access, disable_member_project_creation,
		prevent_superuser_access, disable_member_invite) VALUES
		($1, 'acme', 'Acme', now(), 'cus_acme', true, '', 'us', 0, true, false, false, false, false, false, false, true, false, false, false),
		($2, 'globex', 'Globex', now(), NULL, false, '', 'de', 0, false, false, true, false, false, false, false, false, false, false, false)`,
		topoOrgUS, topoOrgDE)
	integrations := []struct {
		id                         int
		provider, externalID, name string
		metadata                   string
	}{
		{topoIntegrationBoth, "github", topoInstallBoth, "acme-and-globex",
			`{"access_token":"` + topoExpiredBoth + `","expires_at":"2020-01-01T00:00:00","icon":"https://avatars.example/u/61",
			  "domain_name":"github.com/acme","account_type":"Organization","account_id":61,"permissions":{"contents":"read","issues":"write"},
			  "sender":{"id":1,"login":"octo"}}`},
		{topoIntegrationUS, "github", topoInstallUS, "acme-only",
			`{"access_token":"` + topoSeededUS + `","expires_at":"` + future + `","domain_name":"github.com/acme-labs","account_type":"Organization"}`},
		{topoIntegrationGitLab, "gitlab", "gitlab.globex:4", "globex-gitlab",
			`{"base_url":"` + tpURL + `","domain_name":"gitlab.globex/grp","verify_ssl":false,"scopes":["api"],"group_id":4,
			  "include_subgroups":false,"webhook_secret":"gl-webhook-secret"}`},
	}
	for _, in := range integrations {
		mustExec(t, db, `INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status, date_added, date_updated)
			VALUES ($1, $2, $3, $4, $5::jsonb, 0, now(), now())`, in.id, in.provider, in.externalID, in.name, in.metadata)
	}
	mustExec(t, db, `INSERT INTO sentry_identityprovider (id, type, config, date_added, external_id) VALUES (9301, 'gitlab', '{}', now(), 'gitlab.globex:4')`)
	mustExec(t, db, `INSERT INTO sentry_identity (id, idp_id, user_id, external_id, data, status, scopes, date_verified, date_added)
		VALUES ($1, 9301, 77, 'gitlab.globex:4:77', $2, 1, '{api}', now(), now())`, topoIdentityGitLab,
		`{"access_token":"`+topoGitLabExpired+`","refresh_token":"`+topoGitLabRefresh+`","expires":1,"token_type":"Bearer","scopes":["api"],"created_at":1}`)
	for _, oi := range []struct {
		id, integration int
		org             int64
		auth            any
	}{
		{topoOIBothUS, topoIntegrationBoth, topoOrgUS, nil},
		{topoOIBothDE, topoIntegrationBoth, topoOrgDE, nil},
		{topoOIUS, topoIntegrationUS, topoOrgUS, nil},
		{topoOIGitLab, topoIntegrationGitLab, topoOrgDE, topoIdentityGitLab},
	} {
		mustExec(t, db, `INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, config, default_auth_id,
			date_added, status, grace_period_end, date_updated) VALUES ($1, $2, $3, '{}', $4, now(), 0, NULL, now())`,
			oi.id, oi.org, oi.integration, oi.auth)
	}
	mustExec(t, db, `INSERT INTO sentry_sentryapp (id, owner_id, name, slug, status, uuid, is_alertable, verify_install, events,
		schema, date_added, date_updated, popularity, metadata)
		VALUES (9401, $1, 'Globex App', 'globex-app', 1, 'a9b8c7d6-0000-4000-8000-000000009401', false, true, '{issue}', '{}', now(), now(), 1, '{}')`,
		topoOrgDE)
	mustExec(t, db, `INSERT INTO sentry_sentryappinstallation (id, sentry_app_id, organization_id, uuid, status, date_added, date_updated)
		VALUES (9501, 9401, $1, $2, 1, now(), now()), (9502, 9401, $3, $4, 1, now(), now())`,
		topoOrgUS, topoAppInstallUS, topoOrgDE, topoAppInstallDE)
	mustExec(t, db, `INSERT INTO sentry_projectkeymapping (project_key_id, public_key, region_name, date_updated)
		VALUES (1, $1, 'us', now()), (2, $2, 'de', now())`, topoKeyUS, topoKeyDE)
}

// topoSchema describes a database's tables, columns (with types and
// NULLs) and indexes, to show that nobody altered them.
func topoSchema(t *testing.T, db *sql.DB) string {
	t.Helper()
	var cols, idx sql.NullString
	if err := db.QueryRow(`SELECT string_agg(table_name || '.' || column_name || ':' || data_type || ':' || is_nullable, ','
		ORDER BY table_name, ordinal_position) FROM information_schema.columns WHERE table_schema = 'public'`).Scan(&cols); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'public'`).Scan(&idx); err != nil {
		t.Fatal(err)
	}
	return cols.String + "\nindexes: " + idx.String
}

// topoTables lists a database's tables whose names match the LIKE pattern.
func topoTables(t *testing.T, db *sql.DB, like string) []string {
	t.Helper()
	rows, err := db.Query(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE $1 ORDER BY 1`, like)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// topoJSON reads one JSON column of one row of the control database.
func topoJSON(t *testing.T, db *sql.DB, q string, id int) map[string]any {
	t.Helper()
	var raw string
	if err := db.QueryRow(q, id).Scan(&raw); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("%s: %q is not a JSON object: %v", q, raw, err)
	}
	return m
}

// topoDelivery is one webhook a region received.
type topoDelivery struct {
	seq        int // arrival order at this region
	at         time.Time
	path       string
	deliveryID string
	sum        [32]byte
	size       int
	signed     bool   // X-Hub-Signature-256 matches the body received
	head       []byte // the first bytes of the body
}

// topoRegion is a fake region: webhooks are recorded (and answered 401
// when their signature does not match their body, as Sentry's GitHub
// endpoint answers), everything else is a gateway request, recorded by its
// m query parameter and answered with the region's name.
type topoRegion struct {
	name       string
	srv        *httptest.Server
	mu         sync.Mutex
	deliveries []topoDelivery
	gateway    map[string]string // marker → path
	// gate, when set, holds every webhook delivery (after recording
	// it) until a value is received from it or it is closed; waiting is
	// the delivery id held now ("" when none).
	gate    atomic.Pointer[chan struct{}]
	waiting atomic.Value
}

func newTopoRegion(t *testing.T, name string) *topoRegion {
	t.Helper()
	r := &topoRegion{name: name, gateway: map[string]string{}}
	r.waiting.Store("")
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *topoRegion) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if strings.HasPrefix(req.URL.Path, "/extensions/") {
		d := topoDelivery{at: time.Now(), path: req.URL.RequestURI(), deliveryID: req.Header.Get("X-GitHub-Delivery"),
			sum: sha256.Sum256(body), size: len(body), signed: req.Header.Get("X-Hub-Signature-256") == topoSignature(body),
			head: bytes.Clone(body[:min(len(body), 160)])}
		r.mu.Lock()
		d.seq = len(r.deliveries)
		r.deliveries = append(r.deliveries, d)
		r.mu.Unlock()
		if g := r.gate.Load(); g != nil {
			r.waiting.Store(d.deliveryID)
			select {
			case <-*g:
			case <-req.Context().Done():
			}
			r.waiting.Store("")
		}
		if !d.signed {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	if m := req.URL.Query().Get("m"); m != "" {
		r.mu.Lock()
		r.gateway[m] = req.URL.Path
		r.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"region":%q}`, r.name)
}

func (r *topoRegion) received() []topoDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]topoDelivery(nil), r.deliveries...)
}

// heldDelivery is the delivery id waiting at the gate ("" when none).
func (r *topoRegion) heldDelivery() string { return r.waiting.Load().(string) }

func (r *topoRegion) sawGateway(marker string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.gateway[marker]
	return ok
}

func topoSignature(body []byte) string {
	mac := hmac.New(sha256.New, []byte(topoWebhookSecret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// topoThirdParty plays GitHub and GitLab: token endpoints that mint
// tokens per owner (a GitHub installation id, or "gitlab"), and an API
// under /topo/<owner>/ that accepts only the owner's current tokens.
type topoThirdParty struct {
	srv           *httptest.Server
	mu            sync.Mutex
	valid         map[string]string // token → owner
	mints         map[string]int    // owner → tokens minted
	gitlabRefresh string            // the refresh token GitLab accepts now
	grants        []string          // refresh tokens presented, in order
	calls         []topoAPICall
	// tokenGate, when set, holds every GitLab token request until it is
	// closed; tokenAsked counts the requests that arrived.
	tokenGate  atomic.Pointer[chan struct{}]
	tokenAsked atomic.Int64
}

// topoAPICall is one API request the third party received.
type topoAPICall struct {
	owner, token string
	ok           bool
}

func newTopoThirdParty(t *testing.T) *topoThirdParty {
	t.Helper()
	tp := &topoThirdParty{valid: map[string]string{topoSeededUS: topoInstallUS}, mints: map[string]int{}, gitlabRefresh: topoGitLabRefresh}
	key := &credGitHubKey(t).PublicKey
	tp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasPrefix(r.URL.Path, "/app/installations/") && strings.HasSuffix(r.URL.Path, "/access_tokens"):
			installation := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/app/installations/"), "/access_tokens")
			raw := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			tok, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return key, nil },
				jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(credGitHubAppID))
			if err != nil || !tok.Valid || r.Method != http.MethodPost {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"message":"A JSON web token could not be decoded"}`)
				return
			}
			tp.mu.Lock()
			tp.mints[installation]++
			token := fmt.Sprintf("ghs_%s_%d", installation, tp.mints[installation])
			tp.valid[token] = installation
			tp.mu.Unlock()
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"token":%q,"expires_at":%q,"permissions":{"contents":"read"}}`, token, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		case r.URL.Path == "/oauth/token":
			tp.tokenAsked.Add(1)
			if g := tp.tokenGate.Load(); g != nil {
				<-*g
			}
			form, _ := url.ParseQuery(string(body))
			tp.mu.Lock()
			defer tp.mu.Unlock()
			tp.grants = append(tp.grants, form.Get("refresh_token"))
			if form.Get("grant_type") != "refresh_token" || form.Get("client_id") != credGitLabClientID ||
				form.Get("client_secret") != credGitLabSecret || form.Get("refresh_token") != tp.gitlabRefresh {
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprint(w, `{"error":"invalid_grant","error_description":"The provided authorization grant is invalid"}`)
				return
			}
			tp.mints[topoGitLab]++
			n := tp.mints[topoGitLab]
			access := fmt.Sprintf("glat_%d", n)
			tp.gitlabRefresh = fmt.Sprintf("glrt_%d", n)
			tp.valid[access] = topoGitLab
			fmt.Fprintf(w, `{"access_token":%q,"refresh_token":%q,"token_type":"Bearer","expires_in":7200,"scope":"api","created_at":%d}`,
				access, tp.gitlabRefresh, time.Now().Unix())
		case strings.HasPrefix(r.URL.Path, "/topo/"):
			owner, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/topo/"), "/")
			auth := r.Header.Get("Authorization")
			token := strings.TrimPrefix(strings.TrimPrefix(auth, "Bearer "), "token ")
			tp.mu.Lock()
			ok := auth != "" && tp.valid[token] == owner
			tp.calls = append(tp.calls, topoAPICall{owner: owner, token: token, ok: ok})
			tp.mu.Unlock()
			if !ok {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"message":"Bad credentials"}`)
				return
			}
			fmt.Fprintf(w, `{"owner":%q}`, owner)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"message":"Not Found"}`)
		}
	}))
	t.Cleanup(tp.srv.Close)
	return tp
}

func (tp *topoThirdParty) URL() string { return tp.srv.URL }

func (tp *topoThirdParty) minted(owner string) int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.mints[owner]
}

// revoke makes the API refuse token, as GitHub does once a token expired.
func (tp *topoThirdParty) revoke(token string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	delete(tp.valid, token)
}

// callsSince returns the API calls received after the first n.
func (tp *topoThirdParty) callsSince(n int) []topoAPICall {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if n > len(tp.calls) {
		return nil
	}
	return append([]topoAPICall(nil), tp.calls[n:]...)
}

func (tp *topoThirdParty) callCount() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.calls)
}

func (tp *topoThirdParty) grantsPresented() []string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]string(nil), tp.grants...)
}

// topoProxyCall is the fate of one credential proxy call.
type topoProxyCall struct {
	status  int
	failure string // X-Sentry-Internal-Proxy-Failure
	body    string
	err     error
}

func (c topoProxyCall) String() string {
	if c.err != nil {
		return "error: " + c.err.Error()
	}
	return fmt.Sprintf("%d failure=%s %s", c.status, c.failure, strings.TrimSpace(c.body))
}

// topoProxyTargets maps an organization integration to the third-party
// owner whose token it must carry.
var topoProxyTargets = map[int]string{topoOIBothUS: topoInstallBoth, topoOIBothDE: topoInstallBoth, topoOIUS: topoInstallUS, topoOIGitLab: topoGitLab}

// proxyCall sends a signed GET through instance i's credential proxy, as a
// region would, for organization integration oi.
func (top *topology) proxyCall(ctx context.Context, i, oi int) topoProxyCall {
	owner := topoProxyTargets[oi]
	base := top.tp.URL()
	target := base + "/topo/" + owner + "/repos/acme/widgets/issues?state=open"
	if owner == topoGitLab {
		target = base + "/topo/gitlab/api/v4/projects/4/issues?state=opened"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return topoProxyCall{err: err}
	}
	req.Body = http.NoBody
	control, _ := url.Parse(top.bases[i])
	if err := subnet.SignRequest(req, control, credSubnetSecret, base, strconv.Itoa(oi)); err != nil {
		return topoProxyCall{err: err}
	}
	var resp *http.Response
	for try := 0; try < 3; try++ {
		// A connection reset by a reload is retried, as a region's
		// client retries a GET.
		if resp, err = top.client.Do(req.Clone(ctx)); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return topoProxyCall{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return topoProxyCall{status: resp.StatusCode, failure: resp.Header.Get(subnet.HeaderInternalProxyFailure), body: string(b)}
}

// ok reports whether the call reached the third party with a token of the
// owner oi names.
func (c topoProxyCall) ok(oi int) bool {
	return c.err == nil && c.status == http.StatusOK && c.body == fmt.Sprintf(`{"owner":%q}`, topoProxyTargets[oi])
}

// topoRoute is a gateway request and the region that must answer it ("" is
// apigw's 404).
type topoRoute struct{ path, region string }

var topoRoutes = []topoRoute{
	{"/api/0/organizations/acme/issues/", "us"},
	{"/api/0/organizations/globex/issues/", "de"},
	{fmt.Sprintf("/api/0/organizations/%d/projects/", topoOrgDE), "de"},
	{fmt.Sprintf("/api/0/organizations/%d/projects/", topoOrgUS), "us"},
	{"/api/0/sentry-app-installations/" + topoAppInstallUS + "/external-requests/", "us"},
	{"/api/0/sentry-app-installations/" + topoAppInstallDE + "/external-requests/", "de"},
	{"/api/0/sentry-apps/globex-app/requests/", "de"},
	{"/js-sdk-loader/" + topoKeyUS + ".min.js", "us"},
	{"/js-sdk-loader/" + topoKeyDE + ".min.js", "de"},
	{"/api/0/organizations/no-such-org/issues/", ""},
}

// gatewayCall sends route r to instance i with marker m and returns what
// was wrong with the answer ("" when right).
func (top *topology) gatewayCall(ctx context.Context, i int, r topoRoute, marker string) string {
	target := top.bases[i] + r.path + "?m=" + marker
	var resp *http.Response
	var err error
	for try := 0; try < 3; try++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if resp, err = top.client.Do(req); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return fmt.Sprintf("%s on instance %d: %v", r.path, i, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if r.region == "" {
		if want := `{"error":"apigateway","detail":"Not found"}`; resp.StatusCode != http.StatusNotFound || string(body) != want {
			return fmt.Sprintf("%s on instance %d: %d %s, want 404 %s", r.path, i, resp.StatusCode, body, want)
		}
		return ""
	}
	region := top.us
	if r.region == "de" {
		region = top.de
	}
	if want := fmt.Sprintf(`{"region":%q}`, r.region); resp.StatusCode != http.StatusOK || string(body) != want {
		return fmt.Sprintf("%s on instance %d: %d %s, want 200 %s", r.path, i, resp.StatusCode, body, want)
	}
	if !region.sawGateway(marker) {
		return fmt.Sprintf("%s on instance %d: region %s answered but did not see marker %s", r.path, i, r.region, marker)
	}
	return ""
}

// topoMetrics reads an instance's admin /metrics into series → value.
func topoMetrics(c *harness.Caddy) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.AdminGet(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, nil
}

// topoSeries keeps the series of the named metrics.
func topoSeries(m map[string]float64, names ...string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		for _, n := range names {
			if k == n || strings.HasPrefix(k, n+"{") {
				out[k] = v
			}
		}
	}
	return out
}

// topoSum adds up the series of one metric.
func topoSum(m map[string]float64, name string) float64 {
	var s float64
	for _, v := range topoSeries(m, name) {
		s += v
	}
	return s
}

// concurrentProxyCalls makes n calls at once, spread over both instances
// and cycling through ois, and returns those that did not reach the third
// party with their owner's token.
func (top *topology) concurrentProxyCalls(n int, ois ...int) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	start := make(chan struct{})
	for k := 0; k < n; k++ {
		wg.Go(func() {
			<-start
			oi := ois[k%len(ois)]
			if c := top.proxyCall(ctx, k%2, oi); !c.ok(oi) {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("instance %d, organization integration %d: %s", k%2, oi, c))
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	return failed
}

// topoTokens counts the tokens API calls carried.
func topoTokens(calls []topoAPICall) map[string]int {
	out := map[string]int{}
	for _, c := range calls {
		out[c.token]++
	}
	return out
}

// topoCheckpoint is the counters of both instances at one moment.
type topoCheckpoint struct {
	label  string
	series []map[string]float64
}

// topoCounters are the counters that must only grow, reloads or not.
var topoCounters = []string{"caddy_sentry_gateway_requests_total", "caddy_sentry_deliveries_total",
	"caddy_sentry_webhooks_captured_total", "caddy_sentry_credproxy_requests_total"}

func (top *topology) checkpoint(t *testing.T, label string) topoCheckpoint {
	t.Helper()
	cp := topoCheckpoint{label: label}
	for i, c := range top.instances {
		m, err := topoMetrics(c)
		if err != nil {
			t.Errorf("metrics of instance %d (%s): %v", i, label, err)
		}
		cp.series = append(cp.series, topoSeries(m, topoCounters...))
	}
	return cp
}

func (cp topoCheckpoint) String() string {
	var parts []string
	for i, s := range cp.series {
		parts = append(parts, fmt.Sprintf("instance %d: gateway %g, deliveries %g, captured %g", i,
			topoSum(s, "caddy_sentry_gateway_requests_total"), topoSum(s, "caddy_sentry_deliveries_total"),
			topoSum(s, "caddy_sentry_webhooks_captured_total")))
	}
	return cp.label + ": " + strings.Join(parts, "; ")
}

// topoBackwards lists every counter series that went down from one
// checkpoint to the next (a series that vanished counts as 0).
func topoBackwards(cps []topoCheckpoint) []string {
	var out []string
	for k := 1; k < len(cps); k++ {
		prev, cur := cps[k-1], cps[k]
		for i := range prev.series {
			keys := make([]string, 0, len(prev.series[i]))
			for key := range prev.series[i] {
				keys = append(keys, key)
			}
			sort.Strings(keys)
			for _, key := range keys {
				if was, now := prev.series[i][key], cur.series[i][key]; now < was {
					out = append(out, fmt.Sprintf("instance %d, %q → %q: %s went from %g to %g", i, prev.label, cur.label, key, was, now))
				}
			}
		}
	}
	return out
}
