package integration_tests

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// Secrets of the capture fixture.
const (
	captureSlackSecret = "slack-signing-secret"
	captureJiraSecret  = "jsecret"
	captureJSSecret    = "jssecret"
)

// captureDiscordKey is a fixed Ed25519 key, so the Caddyfile can name its
// public half.
var captureDiscordKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

// captureSetup is one running binary with webhook capture in front of a
// "control" responder, the drainer off (rows stay where capture put them),
// regions us and de as fake servers, and the directory of §7.
type captureSetup struct {
	c        *harness.Caddy
	base     string
	db       *sql.DB
	postgres bool
	storage  string
	site     *harness.Port
	us, de   *httptest.Server
	control  *httptest.Server
}

type captureOptions struct {
	dsn     string // PostgreSQL storage when set, else SQLite
	handler string // lines inside sentry_webhook_capture { }
}

func newCaptureSetup(t *testing.T, opts captureOptions) *captureSetup {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binary; left out under -short")
	}
	s := &captureSetup{site: harness.ReservePort(t)}
	region := func(name string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"region":%q}`, name)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	s.us, s.de = region("us"), region("de")
	s.control = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "control")
	}))
	t.Cleanup(s.control.Close)
	driver, source := "sqlite", ""
	if opts.dsn != "" {
		s.postgres = true
		s.storage = "postgres " + opts.dsn
		driver, source = "pgx", opts.dsn
	} else {
		path := filepath.Join(t.TempDir(), "silo.db")
		s.storage = "sqlite " + path
		source = path + "?_pragma=busy_timeout(10000)"
	}
	admin := harness.ReservePort(t)
	s.c = harness.Start(t, admin, s.caddyfile(admin, opts.handler), "SILO_TEST_SLACK_SECRET="+captureSlackSecret)
	s.base = s.site.URL()
	db, err := sql.Open(driver, source)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s.db = db
	s.seed(t)
	return s
}

func (s *captureSetup) caddyfile(admin *harness.Port, handler string) string {
	return fmt.Sprintf(`{
%s	sentry_silo {
		storage %s
		region us %s
		region de %s
		directory_cache 1s 1s
		organization 1 acme us
		organization 2 beta de
		drainer {
			off
		}
	}
}
http://%s {
	sentry_webhook_capture {
		slack_signing_secret {env.SILO_TEST_SLACK_SECRET}
		discord_public_key %s
%s
	}
	reverse_proxy %s
}
`, harness.GlobalOptions(admin), s.storage, s.us.URL, s.de.URL, s.site.Addr,
		hex.EncodeToString(captureDiscordKey.Public().(ed25519.PublicKey)), handler, strings.TrimPrefix(s.control.URL, "http://"))
}

// seed waits for the migrations, then inserts the directory rows of §7:
// acme (1) in us, beta (2) in de, and one integration per provider.
func (s *captureSetup) seed(t *testing.T) {
	t.Helper()
	waitForTables(t, s.db, 30*time.Second, s.c.Logs, "sentry_organizationintegration", "silo_webhook_payload")
	mustExec(t, s.db, `INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES (1, 'acme', 'us', 0), (2, 'beta', 'de', 0)`)
	integrations := []struct {
		id                   int
		provider, externalID string
		metadata             string
		orgs                 []int
		oiStatus             int
	}{
		{10, "github", "555", `{}`, []int{1, 2}, 0},
		{11, "github_enterprise", "ghe.example.com:77", `{}`, []int{1}, 0},
		{12, "gitlab", "gitlab.example.com:grp", `{}`, []int{1}, 0},
		{13, "slack", "T123", `{}`, []int{1, 2}, 0},
		{14, "discord", "G1", `{}`, []int{2}, 0},
		{16, "jira", "jira-client-key", `{"shared_secret":"` + captureJiraSecret + `"}`, []int{1}, 0},
		{17, "jira", "jira-two", `{"shared_secret":"` + captureJiraSecret + `"}`, []int{1, 2}, 0},
		{18, "jira_server", "js", `{"webhook_secret":"` + captureJSSecret + `"}`, []int{1}, 0},
		{19, "msteams", "team-1", `{}`, []int{2}, 0},
		{20, "vsts", "coll-1", `{}`, []int{1}, 0},
		{21, "slack", "TGONE", `{}`, []int{1}, 1}, // organization integration disabled
	}
	oi := 100
	for _, in := range integrations {
		mustExec(t, s.db, fmt.Sprintf(`INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES (%d, '%s', '%s', 'x', '%s', 0)`,
			in.id, in.provider, in.externalID, in.metadata))
		for _, org := range in.orgs {
			oi++
			mustExec(t, s.db, fmt.Sprintf(`INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES (%d, %d, %d, %d)`,
				oi, org, in.id, in.oiStatus))
		}
	}
}

// capturedRow is a row of silo_webhook_payload.
type capturedRow struct {
	id          int64
	mailbox     string
	provider    string
	region      string
	integration sql.NullInt64
	method      string
	path        string
	headers     string
	body        []byte
	destination string
	callbackURL sql.NullString
	deliveryKey sql.NullString
}

func (s *captureSetup) rows(t *testing.T) []capturedRow {
	t.Helper()
	rs, err := s.db.Query(`SELECT id, mailbox_name, provider, region_name, integration_id, request_method, request_path,
		request_headers, request_body, destination_type, callback_url, delivery_key FROM silo_webhook_payload ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []capturedRow
	for rs.Next() {
		var r capturedRow
		if err := rs.Scan(&r.id, &r.mailbox, &r.provider, &r.region, &r.integration, &r.method, &r.path,
			&r.headers, &r.body, &r.destination, &r.callbackURL, &r.deliveryKey); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *captureSetup) count(t *testing.T) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM silo_webhook_payload`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var captureClient = &http.Client{Timeout: 30 * time.Second}

func (s *captureSetup) post(t *testing.T, path string, header http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := captureClient.Do(req)
	if err != nil && (strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "reset")) {
		// A connection reset by a listener closed in a reload: retry
		// once, as any provider would, on a new connection (the other
		// idle ones went to the same old server).
		captureClient.CloseIdleConnections()
		req, _ = http.NewRequest(http.MethodPost, s.base+path, bytes.NewReader(body))
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err = captureClient.Do(req)
	}
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

func hdrs(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func githubPush(delivery string) http.Header {
	return hdrs("Content-Type", "application/json", "X-GitHub-Event", "push", "X-GitHub-Delivery", delivery)
}

func slackHeaders(contentType string, body []byte) http.Header {
	ts := fmt.Sprint(time.Now().Unix())
	return hdrs("Content-Type", contentType, "X-Slack-Request-Timestamp", ts,
		"X-Slack-Signature", signSlack(captureSlackSecret, ts, body))
}

func discordHeaders(body []byte) http.Header {
	ts := fmt.Sprint(time.Now().Unix())
	sig := ed25519.Sign(captureDiscordKey, append([]byte(ts), body...))
	return hdrs("Content-Type", "application/json", "X-Signature-Ed25519", hex.EncodeToString(sig), "X-Signature-Timestamp", ts)
}

// jiraConnectJWT is a Connect JWT for POST /extensions/jira/issue-updated/
// with no query: its qsh claim is that request's query string hash.
func jiraConnectJWT(t *testing.T, iss, secret string) string {
	t.Helper()
	return jiraTokenFor(t, iss, secret, jiraQSH("POST", "/extensions/jira/issue-updated/", ""))
}

func jiraServerPathToken(t *testing.T, id int, secret string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"id": id}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// signSlack is Slack's v0 signature: hex HMAC-SHA256 of "v0:<ts>:<body>".
func signSlack(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + ts + ":"))
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}
