package integration_tests

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

// logFilterSnippet is the snippet the examples define for their logs.
const logFilterSnippet = "no_secrets_in_logs"

// exampleSnippet returns the text of a snippet defined in a file of
// caddyfile_examples, from its "(name) {" line to its closing brace.
func exampleSnippet(t *testing.T, file, name string) (string, bool) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "caddyfile_examples", file))
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	start := strings.Index(s, "("+name+") {")
	if start < 0 {
		return "", false
	}
	depth := 0
	for i := start; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				return s[start : i+1], true
			}
		}
	}
	t.Fatalf("%s: snippet (%s) is not closed", file, name)
	return "", false
}

// TestDebugLogHasNoSecrets runs the real binary with Caddy's `debug`
// option, the examples' log filter on the default logger and on an
// access log, PostgreSQL storage whose DSN has a password, and traffic
// that carries every secret through every handler: gateway requests with
// X-Sentry-Auth, ?sentry_key= and a client-sent subnet signature (to a
// region and to control), signed Slack and GitHub webhooks (captured, and
// passed to control), a GitLab token, and a credential-proxy call whose
// GitHub token a fake third party mints. No configured secret, token or
// signature may appear anywhere in the log.
func TestDebugLogHasNoSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary and PostgreSQL; left out under -short")
	}
	const (
		subnetSecret  = "subnet-secret-value-7f3a"
		slackSecret   = "slack-signing-secret-9c1e"
		githubSecret  = "github-webhook-secret-2b8d"
		pgPassword    = "pg-password-value-5e6f"
		sentryAuth    = "Sentry sentry_key=auth-key-1a2b, sentry_version=7, sentry_secret=auth-secret-3c4d"
		queryKey      = "query-key-5e6f"
		clientSig     = "v0=client-signature-7a8b"
		gitlabToken   = "gitlab.example.com:grp:gitlab-token-9d0e"
		bearer        = "Bearer bearer-token-1f2e"
		cookie        = "session=cookie-value-3a4b"
		jiraPathToken = "jira-server-path-token-4b5c"
		jiraQueryJWT  = "jira-query-jwt-6d7e"
	)

	// The postgres example's filter, exactly; the quickstart's must be
	// the same one.
	snippet, ok := exampleSnippet(t, "postgres.Caddyfile", logFilterSnippet)
	if !ok {
		t.Errorf("caddyfile_examples/postgres.Caddyfile defines no (%s) snippet; running without a log filter", logFilterSnippet)
		// Not empty: Caddy drops an empty global log block, and
		// `debug` with it.
		snippet = "(" + logFilterSnippet + ") {\n\toutput stderr\n}"
	}
	if q, _ := exampleSnippet(t, "quickstart.Caddyfile", logFilterSnippet); q != snippet {
		t.Errorf("quickstart.Caddyfile's (%s) differs from postgres.Caddyfile's:\n%s", logFilterSnippet, q)
	}

	if doc, err := os.ReadFile("../docs/operations.md"); err != nil || !strings.Contains(string(doc), snippet) {
		t.Errorf("docs/operations.md does not show the examples' (%s) snippet as it is (%v)", logFilterSnippet, err)
	}

	dsn, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	password, hasPassword := dsn.User.Password()
	if !hasPassword {
		// The throwaway cluster trusts loopback: any password works.
		password = pgPassword
		dsn.User = url.UserPassword(dsn.User.Username(), password)
	}

	region := newFakeUpstream(t, "us")
	control := newFakeUpstream(t, "control")
	tp := newFakeThirdParty(t)
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "github.pem")
	der := x509.MarshalPKCS1PrivateKey(credGitHubKey(t))
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}

	admin, site := harness.ReservePort(t), harness.ReservePort(t)
	caddyfile := fmt.Sprintf(`%s

{
%s	debug
	log {
		import %s
	}
	sentry_silo {
		storage postgres {env.SILO_TEST_PG_DSN}
		region us %s
		url_prefix https://sentry.io
		subnet_secret {env.SILO_TEST_SUBNET_SECRET}
		directory_cache 1s 1s
		drainer {
			poll_interval 100ms
		}
	}
}
http://%s {
	log {
		import %[3]s
	}
	sentry_webhook_capture {
		slack_signing_secret {env.SILO_TEST_SLACK_SECRET}
		github_webhook_secret {env.SILO_TEST_GITHUB_SECRET}
	}
	sentry_cred_proxy {
		allow_host 127.0.0.1
		github_app_id %[6]s
		github_private_key {file.%[7]s}
	}
	sentry_region_route
	reverse_proxy %[8]s
}
`, snippet, harness.GlobalOptions(admin), logFilterSnippet, region.URL(), site.Addr, credGitHubAppID, keyPath, control.Host())
	c := harness.Start(t, admin, caddyfile,
		"SILO_TEST_PG_DSN="+dsn.String(), "SILO_TEST_SUBNET_SECRET="+subnetSecret,
		"SILO_TEST_SLACK_SECRET="+slackSecret, "SILO_TEST_GITHUB_SECRET="+githubSecret)
	base := site.URL()

	db, err := sql.Open("pgx", dsn.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	waitForTables(t, db, 60*time.Second, c.Logs, "sentry_organizationintegration", "silo_webhook_payload")
	mustExec(t, db, `INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES (1, 'acme', 'us', 0)`)
	for _, in := range []struct {
		id, oi        int
		provider, ext string
		metadata      string
	}{
		{10, 110, "github", "555", `{}`},
		{11, 111, "slack", "T123", `{"access_token":"` + credSlackToken + `"}`},
		{12, 112, "gitlab", "gitlab.example.com:grp", `{}`},
		{20, 120, "github", "777", `{"access_token":"` + credExpiredGitHub + `","expires_at":"2020-01-01T00:00:00"}`},
	} {
		mustExec(t, db, fmt.Sprintf(`INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES (%d, '%s', '%s', 'x', '%s', 0)`, in.id, in.provider, in.ext, in.metadata))
		mustExec(t, db, fmt.Sprintf(`INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES (%d, 1, %d, 0)`, in.oi, in.id))
	}

	client := &http.Client{Timeout: 30 * time.Second}
	send := func(method, path string, h http.Header, body []byte, want int) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s %s: %d, want %d", method, path, resp.StatusCode, want)
		}
	}
	secretHeaders := hdrs("X-Sentry-Auth", sentryAuth, subnet.HeaderSignature, clientSig, "Authorization", bearer, "Cookie", cookie)

	// The gateway, to a region and to control.
	send("GET", "/api/0/organizations/acme/issues/?sentry_key="+queryKey+"&x=1", secretHeaders, nil, 200)
	send("GET", "/api/0/users/me/?sentry_key="+queryKey, secretHeaders, nil, 200)

	// Webhooks: captured, and passed to control.
	push := []byte(`{"installation":{"id":555},"repository":{"id":1}}`)
	gh := githubPush("log-1")
	gh.Set("X-Hub-Signature-256", signGitHub(githubSecret, push))
	send("POST", "/extensions/github/webhook/", gh, push, 202)
	install := []byte(`{"action":"created","installation":{"id":555}}`)
	ghInstall := hdrs("Content-Type", "application/json", "X-GitHub-Event", "installation", "X-GitHub-Delivery", "log-2",
		"X-Hub-Signature-256", signGitHub(githubSecret, install))
	send("POST", "/extensions/github/webhook/", ghInstall, install, 200)
	event := []byte(`{"type":"event_callback","team_id":"T123","event_id":"Ev-log"}`)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	slackSig := signSlack(slackSecret, ts, event)
	slack := hdrs("Content-Type", "application/json", "X-Slack-Request-Timestamp", ts, "X-Slack-Signature", slackSig)
	send("POST", "/extensions/slack/event/", slack, event, 202)
	send("GET", "/extensions/slack/link-identity/abc/", slack, nil, 200)
	send("POST", "/extensions/gitlab/webhook/", hdrs("X-Gitlab-Token", gitlabToken, "X-Gitlab-Event-UUID", "u-log"), []byte(`{"project":{"id":9}}`), 202)
	// Jira's tokens travel in the URL: Jira Server's in the path (an
	// unknown one is answered 200), Connect's in ?jwt= (unknown: 404).
	send("POST", "/extensions/jira-server/issue-updated/"+jiraPathToken+"/", nil, []byte(`{"changelog":{}}`), 200)
	send("POST", "/extensions/jira/issue-updated/?a=1&jwt="+jiraQueryJWT, nil, []byte(`{}`), 404)

	// The credential proxy: the expired token is refreshed through the
	// fake GitHub, which mints ghs_minted_1.
	call, err := http.NewRequest("GET", tp.URL()+"/repos/acme/backend", http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	baseURL, _ := url.Parse(base)
	if err := subnet.SignRequest(call, baseURL, subnetSecret, tp.URL(), "120"); err != nil {
		t.Fatal(err)
	}
	proxySig := call.Header.Get(subnet.HeaderSignature)
	resp, err := client.Do(call)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || tp.githubMint.Load() != 1 {
		t.Fatalf("credential proxy call: %d, %d tokens minted; want 200 and 1", resp.StatusCode, tp.githubMint.Load())
	}

	// Let the drainer deliver the captures, so its logs are in too.
	waitFor(t, "captures delivered", 30*time.Second, func() bool {
		var n int
		return db.QueryRow(`SELECT count(*) FROM silo_webhook_payload`).Scan(&n) == nil && n == 0
	})
	c.Stop()

	logs := c.Logs()
	for _, rewritten := range []string{"sentry_key=REDACTED&x=1", "issue-updated/REDACTED/", "jwt=REDACTED"} {
		if !strings.Contains(logs, rewritten) {
			t.Errorf("the log has no %s: the filter's URI rules did not apply", rewritten)
		}
	}
	for _, want := range []string{`"upstream roundtrip"`, `"handled request"`} {
		if !strings.Contains(logs, want) {
			t.Fatalf("the log has no %s entry: the test saw none of what it checks\n%s", want, logs[:min(len(logs), 4000)])
		}
	}
	for what, secret := range map[string]string{
		"subnet_secret":                           subnetSecret,
		"slack_signing_secret":                    slackSecret,
		"github_webhook_secret":                   githubSecret,
		"the storage DSN's password":              password,
		"X-Sentry-Auth's key":                     "auth-key-1a2b",
		"X-Sentry-Auth's secret":                  "auth-secret-3c4d",
		"?sentry_key=":                            queryKey,
		"a client-sent X-Sentry-Subnet-Signature": clientSig,
		"the credential proxy's signature":        strings.TrimPrefix(proxySig, "v0="),
		"X-Slack-Signature":                       strings.TrimPrefix(slackSig, "v0="),
		"X-Hub-Signature-256":                     strings.TrimPrefix(gh.Get("X-Hub-Signature-256"), "sha256="),
		"X-Gitlab-Token":                          "gitlab-token-9d0e",
		"an Authorization header":                 "bearer-token-1f2e",
		"a cookie":                                "cookie-value-3a4b",
		"a stored GitHub token":                   credExpiredGitHub,
		"a minted GitHub token":                   "ghs_minted_1",
		"a Slack token":                           credSlackToken,
		"a Jira Server path token":                jiraPathToken,
		"a Jira ?jwt=":                            jiraQueryJWT,
	} {
		if secret == "" {
			continue
		}
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, secret) {
				t.Errorf("%s is in the log: %s", what, line)
				break
			}
		}
	}
}

// signGitHub is GitHub's X-Hub-Signature-256: hex HMAC-SHA256 of the body.
func signGitHub(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}
