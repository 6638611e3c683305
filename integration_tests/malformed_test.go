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
	"sync"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

// Malformed requests against one instance running all three handlers in
// their registered order in front of a control responder: every answer is
// a clear 4xx (never a 5xx, never a 2xx from capture), nothing is stored,
// and nothing reaches a region or a third party. Where the right answer is
// a documented pass-through to control, the case says so and checks that
// control, and only control, got the request.

const (
	malSlackSecret  = "malformed-slack-secret"
	malSubnetSecret = "malformed-subnet-secret"
	malMaxBody      = 64 << 10
)

var malDiscordKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))

// malRecorder counts the requests a fake region, control or third party
// received.
type malRecorder struct {
	srv   *httptest.Server
	mu    sync.Mutex
	paths []string
}

func newMalRecorder(t *testing.T, answer string) *malRecorder {
	r := &malRecorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.mu.Lock()
		r.paths = append(r.paths, req.URL.RawPath+"|"+req.URL.Path)
		r.mu.Unlock()
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *malRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.paths)
}

func (r *malRecorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.paths) == 0 {
		return ""
	}
	return r.paths[len(r.paths)-1]
}

type malSetup struct {
	c                   *harness.Caddy
	addr                string // host:port of the site
	db                  *sql.DB
	control, us, remote *malRecorder
}

func newMalSetup(t *testing.T, dsn string) *malSetup {
	t.Helper()
	s := &malSetup{
		control: newMalRecorder(t, "control"),
		us:      newMalRecorder(t, `{"region":"us"}`),
		remote:  newMalRecorder(t, `{"ok":true}`),
	}
	driver, source, storage := "sqlite", "", ""
	if dsn != "" {
		driver, source, storage = "pgx", dsn, "postgres "+dsn
	} else {
		path := filepath.Join(t.TempDir(), "silo.db")
		source, storage = relSQLiteSource(path), "sqlite "+path
	}
	admin, site := harness.ReservePort(t), harness.ReservePort(t)
	s.addr = site.Addr
	// No route block: the three handlers run in the order they register
	// (capture, credential proxy, gateway), then reverse_proxy.
	caddyfile := fmt.Sprintf(`{
%s	sentry_silo {
		storage %s
		region us %s
		subnet_secret %s
		organization 1 acme us
		directory_cache 1s 1s
		drainer {
			off
		}
	}
}
http://%s {
	sentry_webhook_capture {
		max_body_size %d
		slack_signing_secret %s
		discord_public_key %s
	}
	sentry_cred_proxy {
		allow_host 127.0.0.1
	}
	sentry_region_route
	reverse_proxy %s
}
`, harness.GlobalOptions(admin), storage, s.us.srv.URL, malSubnetSecret, site.Addr, malMaxBody, malSlackSecret,
		hex.EncodeToString(malDiscordKey.Public().(ed25519.PublicKey)), strings.TrimPrefix(s.control.srv.URL, "http://"))
	s.c = harness.Start(t, admin, caddyfile)
	db, err := sql.Open(driver, source)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s.db = db
	s.seed(t)
	return s
}

// seed waits for the tables, then adds organization acme (1, us) and one
// integration per provider the table sends to.
func (s *malSetup) seed(t *testing.T) {
	t.Helper()
	waitForTables(t, s.db, 30*time.Second, s.c.Logs, "sentry_organizationintegration", "silo_dead_letter")
	exec := func(q string) {
		t.Helper()
		if _, err := s.db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES (1, 'acme', 'us', 0)`)
	for _, in := range []struct {
		id, oi               int
		provider, externalID string
		metadata             string
	}{
		{10, 101, "github", "555", `{}`},
		{11, 102, "github_enterprise", "ghe.example.com:77", `{}`},
		{12, 103, "gitlab", "gitlab.example.com:grp", `{}`},
		{13, 110, "slack", "T123", `{"access_token":"xoxb-malformed"}`},
		{14, 104, "discord", "G1", `{}`},
		{16, 107, "jira", "jira-client-key", `{"shared_secret":"jsecret"}`},
		{18, 108, "jira_server", "js", `{"webhook_secret":"jssecret"}`},
		{19, 106, "msteams", "team-1", `{}`},
		{20, 105, "vsts", "coll-1", `{}`},
	} {
		exec(fmt.Sprintf(`INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES (%d, '%s', '%s', 'x', '%s', 0)`,
			in.id, in.provider, in.externalID, in.metadata))
		exec(fmt.Sprintf(`INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES (%d, 1, %d, 0)`, in.oi, in.id))
	}
}

// rows counts what capture stored: payloads and dead letters.
func (s *malSetup) rows(t *testing.T) int {
	t.Helper()
	var p, d int
	if err := s.db.QueryRow(`SELECT count(*) FROM silo_webhook_payload`).Scan(&p); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow(`SELECT count(*) FROM silo_dead_letter`).Scan(&d); err != nil {
		t.Fatal(err)
	}
	return p + d
}

// malRaw builds a request byte for byte. A Content-Length is added for
// the body unless the headers already frame it.
func malRaw(method, target string, headers []string, body string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", method, target)
	framed := false
	for _, h := range headers {
		lh := strings.ToLower(h)
		if strings.HasPrefix(lh, "content-length:") || strings.HasPrefix(lh, "transfer-encoding:") {
			framed = true
		}
		b.WriteString(h + "\r\n")
	}
	if !framed {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.Bytes()
}

// malSigned returns the credential proxy's headers for a request signed
// with the instance's subnet secret.
func malSigned(base, path, oi, body string) []string {
	return []string{
		subnet.HeaderBaseURL + ": " + base,
		subnet.HeaderPath + ": " + path,
		subnet.HeaderOrganizationIntegration + ": " + oi,
		subnet.HeaderSignature + ": " + subnet.Sign(malSubnetSecret, base, path, oi, []byte(body)),
	}
}

func malSlackHeaders(body string) []string {
	ts := fmt.Sprint(time.Now().Unix())
	mac := hmac.New(sha256.New, []byte(malSlackSecret))
	mac.Write([]byte("v0:" + ts + ":" + body))
	return []string{"Content-Type: application/json", "X-Slack-Request-Timestamp: " + ts, "X-Slack-Signature: v0=" + hex.EncodeToString(mac.Sum(nil))}
}

func malDiscordHeaders(body string) []string {
	ts := fmt.Sprint(time.Now().Unix())
	sig := ed25519.Sign(malDiscordKey, []byte(ts+body))
	return []string{"Content-Type: application/json", "X-Signature-Ed25519: " + hex.EncodeToString(sig), "X-Signature-Timestamp: " + ts}
}

// What reaches the backends.
const (
	reachesNothing = iota
	reachesControl // documented pass-through: the path is not ours
)

type malCase struct {
	name       string
	request    []byte
	closeWrite bool // half-close after sending: the body is truncated
	status     int
	alsoStatus int // another acceptable answer, when a race decides
	reaches    int
	// regionMaySee is set where the gateway streams a body that breaks
	// off: the region sees the start of the request (no buffering, by
	// design) before the gateway answers for the client.
	regionMaySee bool
	// controlPath, when set, is what control must have received
	// (RawPath|Path as Go's server parsed it).
	controlPath string
	// check looks at the answer further; it returns what is wrong.
	check func(resp *http.Response, body []byte) string
}

func wantGatewayJSON(detail string) func(*http.Response, []byte) string {
	return func(resp *http.Response, body []byte) string {
		want := fmt.Sprintf(`{"error":"apigateway","detail":%q}`, detail)
		if string(body) != want || resp.Header.Get("Content-Type") != "application/json" {
			return fmt.Sprintf("body %q (%s), want %s", body, resp.Header.Get("Content-Type"), want)
		}
		return ""
	}
}

func wantProxyFailureHeader(resp *http.Response, body []byte) string {
	if resp.Header.Get(subnet.HeaderInternalProxyFailure) != "true" || len(body) != 0 {
		return fmt.Sprintf("failure header %q, body %q; want true and empty", resp.Header.Get(subnet.HeaderInternalProxyFailure), body)
	}
	return ""
}

func TestMalformedRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary; left out under -short")
	}
	t.Run("sqlite", func(t *testing.T) { runMalformed(t, newMalSetup(t, ""), "sqlite") })
	t.Run("postgres", func(t *testing.T) { runMalformed(t, newMalSetup(t, pgtest.DSN(t)), "postgres") })
}

func runMalformed(t *testing.T, s *malSetup, engine string) {
	github := func(body string, extra ...string) []byte {
		h := append([]string{"Content-Type: application/json", "X-GitHub-Event: push", "X-GitHub-Delivery: mal-1"}, extra...)
		return malRaw("POST", "/extensions/github/webhook/", h, body)
	}
	valid := `{"installation":{"id":555},"repository":{"id":1}}`
	huge := "X-Padding: " + strings.Repeat("a", 2<<20)
	base := s.remote.srv.URL + "/api"
	proxy := func(headers []string, body string) []byte {
		return malRaw("POST", subnet.ProxyPath, headers, body)
	}
	sign := func(oi string) []string { return malSigned(base, "chat.postMessage", oi, "") }
	replaceSig := func(h []string, sig string) []string {
		out := append([]string(nil), h[:3]...)
		return append(out, subnet.HeaderSignature+": "+sig)
	}
	gitlabToken := "X-Gitlab-Token: gitlab.example.com:grp:secret"

	cases := []malCase{
		// Truncated bodies: Content-Length promises more than arrives
		// before the client half-closes.
		{name: "capture: truncated body", request: malRaw("POST", "/extensions/github/webhook/",
			[]string{"Content-Type: application/json", "X-GitHub-Event: push", "Content-Length: 500"}, valid), closeWrite: true, status: 400},
		{name: "capture: truncated chunked body", request: malRaw("POST", "/extensions/github/webhook/",
			[]string{"Content-Type: application/json", "X-GitHub-Event: push", "Transfer-Encoding: chunked"}, "40\r\n"+valid), closeWrite: true, status: 400},
		{name: "capture: bad chunk size", request: malRaw("POST", "/extensions/github/webhook/",
			[]string{"Content-Type: application/json", "Transfer-Encoding: chunked"}, "zz\r\n"+valid+"\r\n0\r\n\r\n"), status: 400},
		{name: "credential proxy: truncated signed body", request: proxy(append(malSigned(base, "chat.postMessage", "110", `{"text":"hello"}`), "Content-Length: 500"), `{"text":"hello"}`),
			closeWrite: true, status: 400, check: wantProxyFailureHeader},
		// Framing that smuggles: refused by the HTTP server itself.
		{name: "Content-Length and Transfer-Encoding", request: malRaw("POST", "/extensions/github/webhook/",
			[]string{"Content-Type: application/json", "Content-Length: 4", "Transfer-Encoding: chunked"}, "0\r\n\r\n"), status: 400},
		{name: "two different Content-Lengths", request: malRaw("POST", "/extensions/github/webhook/",
			[]string{"Content-Type: application/json", "Content-Length: 4", "Content-Length: 5"}, "{}{}"), status: 400},
		{name: "garbage request line", request: []byte("GARBAGE\r\n\r\n"), closeWrite: true, status: 400},

		// Wrong content types (GitHub requires JSON, as Sentry does).
		{name: "github: text/plain", request: malRaw("POST", "/extensions/github/webhook/",
			[]string{"Content-Type: text/plain", "X-GitHub-Event: push"}, valid), status: 400},
		{name: "github: form-encoded payload", request: malRaw("POST", "/extensions/github/webhook/",
			[]string{"Content-Type: application/x-www-form-urlencoded", "X-GitHub-Event: push"}, "payload="+valid), status: 400},
		{name: "github: no content type", request: malRaw("POST", "/extensions/github/webhook/", []string{"X-GitHub-Event: push"}, valid), status: 400},
		{name: "gitlab: form body", request: malRaw("POST", "/extensions/gitlab/webhook/",
			[]string{"Content-Type: application/x-www-form-urlencoded", gitlabToken}, "project=1"), status: 400},

		// Headers beyond the server's limit (1 MiB): 431 before any
		// handler runs, on each handler's path.
		{name: "capture: huge header", request: github(valid, huge), status: 431},
		{name: "gateway: huge header", request: malRaw("GET", "/api/0/organizations/acme/issues/", []string{huge}, ""), status: 431},
		{name: "credential proxy: huge header", request: proxy(append(sign("110"), huge), ""), status: 431},
		{name: "huge request target", request: malRaw("GET", "/api/0/organizations/acme/"+strings.Repeat("a", 2<<20)+"/", nil, ""), status: 431},

		// Invalid UTF-8.
		{name: "github: invalid UTF-8 breaking the JSON", request: github("{\"installation\":{\"id\":\xff}}"), status: 400},
		{name: "github: installation id not UTF-8", request: github("{\"installation\":{\"id\":\"\xff\xfe\"}}"), status: 400},
		{name: "gitlab: token not UTF-8", request: malRaw("POST", "/extensions/gitlab/webhook/",
			[]string{"Content-Type: application/json", "X-Gitlab-Token: \xff\xfe:grp:secret"}, `{"project":{"id":1}}`), status: 400},
		{name: "github: installation id with an escaped NUL", request: github(`{"installation":{"id":"555\u0000"}}`), status: 400},
		{name: "vsts: collection id with an escaped NUL", request: malRaw("POST", "/extensions/vsts/issue-updated/", []string{"Content-Type: application/json"},
			`{"id":"x","resourceContainers":{"collection":{"id":"coll-1\u0000"}}}`), status: 400},
		{name: "github-enterprise: host not UTF-8", request: malRaw("POST", "/extensions/github-enterprise/webhook/",
			[]string{"Content-Type: application/json", "X-GitHub-Event: push", "X-GitHub-Enterprise-Host: \xff\xfe"}, `{"installation":{"id":77}}`), status: 400},
		{name: "slack: signature not UTF-8", request: malRaw("POST", "/extensions/slack/event/",
			[]string{"Content-Type: application/json", "X-Slack-Request-Timestamp: 1", "X-Slack-Signature: v0=\xff\xfe"}, `{"type":"event_callback","team_id":"T123"}`), status: 401},
		{name: "gateway: organization slug not UTF-8 (escaped)", request: malRaw("GET", "/api/0/organizations/%ff%fe/issues/", nil, ""),
			status: 404, check: wantGatewayJSON("Not found")},
		{name: "gateway: organization slug with NUL", request: malRaw("GET", "/api/0/organizations/acme%00/issues/", nil, ""),
			status: 404, check: wantGatewayJSON("Not found")},
		{name: "credential proxy: signature not UTF-8", request: proxy(replaceSig(sign("110"), "v0=\xff\xfe"), ""), status: 400, check: wantProxyFailureHeader},
		{name: "credential proxy: base URL not UTF-8", request: proxy(malSigned("http://\xff\xfe/api", "x", "110", ""), ""), status: 400, check: wantProxyFailureHeader},
		// Not ours: a webhook path whose view no parser owns goes to
		// control, whatever its bytes (Sentry's middleware falls through).
		{name: "capture: unknown view not UTF-8 (pass-through)", request: malRaw("POST", "/extensions/github/%ff%fe/", []string{"Content-Type: application/json"}, valid),
			status: 200, reaches: reachesControl},

		// Path traversal and odd slashes. Nothing routes on a path it
		// did not match literally: the capture parsers and the gateway
		// table compare raw segments, so a dot segment never turns a
		// control path into a region's, or a webhook into a capture.
		{name: "traversal from a webhook path to an organization (pass-through)", request: malRaw("GET", "/extensions/github/../../api/0/organizations/acme/", nil, ""),
			status: 200, reaches: reachesControl, controlPath: "|/extensions/github/../../api/0/organizations/acme/"},
		{name: "escaped traversal from a webhook path (pass-through)", request: malRaw("POST", "/extensions/github/%2e%2e/%2e%2e/api/0/organizations/acme/", []string{"Content-Type: application/json"}, valid),
			status: 200, reaches: reachesControl},
		{name: "webhook path with a dot segment is not the webhook view (pass-through)", request: malRaw("POST", "/extensions/github/webhook/./", []string{"Content-Type: application/json", "X-GitHub-Event: push"}, valid),
			status: 200, reaches: reachesControl},
		{name: "double slash before extensions (pass-through)", request: malRaw("POST", "//extensions/github/webhook/", []string{"Content-Type: application/json", "X-GitHub-Event: push"}, valid),
			status: 200, reaches: reachesControl},
		{name: "double slash after extensions (pass-through)", request: malRaw("POST", "/extensions//github/webhook/", []string{"Content-Type: application/json", "X-GitHub-Event: push"}, valid),
			status: 200, reaches: reachesControl},
		// The gateway's table matches segments literally; a path with an
		// empty segment matches no row and goes to control, as every
		// unmatched path does (DESIGN: "Everything unmatched goes to the
		// next handler").
		{name: "gateway: double slash before api (pass-through)", request: malRaw("GET", "//api/0/organizations/acme/issues/", nil, ""),
			status: 200, reaches: reachesControl},
		{name: "gateway: double slash inside api (pass-through)", request: malRaw("GET", "/api/0//organizations/acme/issues/", nil, ""),
			status: 200, reaches: reachesControl},
		{name: "gateway: empty organization (pass-through)", request: malRaw("GET", "/api/0/organizations//issues/", nil, ""),
			status: 200, reaches: reachesControl},
		// Dot segments on a proxied route are refused: a region that
		// resolves them would serve a path the gateway never routed.
		{name: "gateway: dot-dot organization", request: malRaw("GET", "/api/0/organizations/%2e%2e/issues/", nil, ""),
			status: 400, check: wantGatewayJSON("Invalid request")},
		{name: "gateway: cell name through traversal", request: malRaw("GET", "/api/0/_admin/cells/..%2fus/x", nil, ""),
			status: 400, check: wantGatewayJSON("Invalid request")},
		{name: "gateway: traversal from an organization to a webhook path", request: malRaw("POST", "/api/0/organizations/acme/../../../extensions/github/webhook/", []string{"Content-Type: application/json"}, valid),
			status: 400, check: wantGatewayJSON("Invalid request")},
		{name: "gateway: escaped traversal from an organization", request: malRaw("GET", "/api/0/organizations/acme/%2e%2e/%2E%2E/%2e%2e/api/0/internal/x/", nil, ""),
			status: 400, check: wantGatewayJSON("Invalid request")},

		// Bad JSON for each provider path.
		{name: "github: truncated JSON", request: github(`{"installation":{"id":555`), status: 400},
		{name: "github: JSON array", request: github(`[{"installation":{"id":555}}]`), status: 400},
		{name: "github: empty body", request: github(""), status: 400},
		{name: "github: installation id is an object", request: github(`{"installation":{"id":{"x":1}}}`), status: 400},
		{name: "github: unknown installation", request: github(`{"installation":{"id":99999999999999999999999}}`), status: 400},
		{name: "github-enterprise: bad JSON", request: malRaw("POST", "/extensions/github-enterprise/webhook/",
			[]string{"Content-Type: application/json", "X-GitHub-Event: push", "X-GitHub-Enterprise-Host: ghe.example.com"}, `{"installation":`), status: 400},
		{name: "gitlab: bad JSON", request: malRaw("POST", "/extensions/gitlab/webhook/", []string{"Content-Type: application/json", gitlabToken}, `{"project":`), status: 400},
		{name: "gitlab: no token", request: malRaw("POST", "/extensions/gitlab/webhook/", []string{"Content-Type: application/json"}, `{"project":{"id":1}}`), status: 400},
		{name: "vsts: bad JSON", request: malRaw("POST", "/extensions/vsts/issue-updated/", []string{"Content-Type: application/json"}, `{"resourceContainers":`), status: 400},
		{name: "slack: bad JSON with a good signature", request: malRaw("POST", "/extensions/slack/event/", malSlackHeaders(`{"type":`), `{"type":`), status: 400},
		{name: "slack: unsigned", request: malRaw("POST", "/extensions/slack/event/", []string{"Content-Type: application/json"}, `{"type":"url_verification","challenge":"x"}`), status: 401},
		{name: "discord: bad JSON with a good signature", request: malRaw("POST", "/extensions/discord/interactions/", malDiscordHeaders(`{"type":`), `{"type":`), status: 400},
		{name: "discord: signature not hex", request: malRaw("POST", "/extensions/discord/interactions/",
			[]string{"Content-Type: application/json", "X-Signature-Ed25519: zz", "X-Signature-Timestamp: 1"}, `{"type":1}`), status: 401},
		{name: "jira: no connect JWT", request: malRaw("POST", "/extensions/jira/issue-updated/", []string{"Content-Type: application/json"}, `{"issue":`), status: 404},
		{name: "jira: garbage JWT", request: malRaw("POST", "/extensions/jira/issue-updated/", []string{"Content-Type: application/json", "Authorization: JWT a.b.c"}, `{}`), status: 404},
		{name: "plugins: unknown organization", request: malRaw("POST", "/plugins/github/organizations/999/webhook/", []string{"Content-Type: application/json"}, `{`), status: 400},
		// Sentry's MS Teams parser sends what it cannot read to control.
		{name: "msteams: bad JSON (pass-through)", request: malRaw("POST", "/extensions/msteams/webhook/", []string{"Content-Type: application/json"}, `{"type":`),
			status: 200, reaches: reachesControl},
		// Sentry's Jira Server parser swallows a bad path token with 200
		// (the sender must not retry); nothing is stored.
		{name: "jira-server: bad token (documented 200)", request: malRaw("POST", "/extensions/jira-server/issue-updated/not-a-token/", []string{"Content-Type: application/json"}, `{"changelog":{}}`), status: 200},

		// Oversize bodies: 413, by the declared length or while reading.
		{name: "capture: declared body over max_body_size", request: malRaw("POST", "/extensions/github/webhook/",
			[]string{"Content-Type: application/json", "X-GitHub-Event: push", fmt.Sprintf("Content-Length: %d", malMaxBody+1)}, ""), closeWrite: true, status: 413},
		{name: "capture: chunked body over max_body_size", request: malRaw("POST", "/extensions/github/webhook/",
			[]string{"Content-Type: application/json", "X-GitHub-Event: push", "Transfer-Encoding: chunked"},
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", malMaxBody+1, strings.Repeat("x", malMaxBody+1))), status: 413},

		// Credential proxy: bad signatures and headers, each 400 with
		// an empty body and X-Sentry-Internal-Proxy-Failure: true.
		{name: "credential proxy: no headers", request: proxy(nil, ""), status: 400, check: wantProxyFailureHeader},
		{name: "credential proxy: signature not hex", request: proxy(replaceSig(sign("110"), "v0=zz"), ""), status: 400, check: wantProxyFailureHeader},
		{name: "credential proxy: signature of another version", request: proxy(replaceSig(sign("110"), "v1="+strings.Repeat("ab", 32)), ""), status: 400, check: wantProxyFailureHeader},
		{name: "credential proxy: empty signature", request: proxy(replaceSig(sign("110"), ""), ""), status: 400, check: wantProxyFailureHeader},
		{name: "credential proxy: truncated signature", request: proxy(replaceSig(sign("110"), "v0=abcd"), ""), status: 400, check: wantProxyFailureHeader},
		{name: "credential proxy: organization integration overflows", request: proxy(sign("99999999999999999999"), ""), status: 400, check: wantProxyFailureHeader},
		{name: "credential proxy: negative organization integration", request: proxy(sign("-110"), ""), status: 400, check: wantProxyFailureHeader},
		{name: "credential proxy: non-ASCII digits", request: proxy(sign("\uff11\uff11\uff10"), ""), status: 400, check: wantProxyFailureHeader},
		{name: "credential proxy: base URL unparsable", request: proxy(malSigned("http://[::1", "x", "110", ""), ""), status: 400, check: wantProxyFailureHeader},
		{name: "credential proxy: path with NUL", request: proxy(malSigned(base, "a\x00b", "110", ""), ""), status: 400},
		{name: "credential proxy: path without the trailing slash, unsigned", request: malRaw("POST", strings.TrimSuffix(subnet.ProxyPath, "/"), nil, ""),
			status: 400, check: wantProxyFailureHeader},

		// Gateway: unknown organizations and keys, 404 JSON.
		{name: "gateway: unknown organization", request: malRaw("GET", "/api/0/organizations/nope/issues/", nil, ""), status: 404, check: wantGatewayJSON("Not found")},
		{name: "gateway: organization id overflows", request: malRaw("GET", "/api/0/organizations/99999999999999999999999/issues/", nil, ""),
			status: 404, check: wantGatewayJSON("Not found")},
		{name: "gateway: unknown cell", request: malRaw("GET", "/api/0/_admin/cells/xx/x", nil, ""), status: 404, check: wantGatewayJSON("Not found")},
		{name: "gateway: unknown Sentry App installation", request: malRaw("GET", "/api/0/sentry-app-installations/not-a-uuid/external-requests/", nil, ""),
			status: 404, check: wantGatewayJSON("Not found")},
		{name: "gateway: DSN that does not parse", request: malRaw("GET", "/api/embed/error-page/?dsn=%25zz", nil, ""), status: 400, check: wantGatewayJSON("Invalid request")},

		// Last, being regionMaySee: see below.
		// 400 "Invalid request"; 499 when the server has already seen
		// the half-close and canceled the request.
		{name: "gateway: truncated body", request: malRaw("POST", "/api/0/organizations/acme/issues/",
			[]string{"Content-Type: application/json", "Content-Length: 500"}, `{"a":1}`), closeWrite: true, status: 400, alsoStatus: 499,
			regionMaySee: true},
	}
	// What reaches the region for a regionMaySee case may arrive after
	// the answer, when no signal says whether it still will: such a case
	// comes last, so that no case after it counts the region's requests.
	for i, tc := range cases {
		if tc.regionMaySee && i != len(cases)-1 {
			t.Fatalf("case %q is regionMaySee and must be the last", tc.name)
		}
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rows, control, us, remote := s.rows(t), s.control.count(), s.us.count(), s.remote.count()
			resp, body, err := rawExchange(s.addr, tc.request, tc.closeWrite)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			var problems []string
			if resp.StatusCode >= 500 {
				problems = append(problems, fmt.Sprintf("%d %q: a malformed request must never get a 5xx", resp.StatusCode, body))
			} else if resp.StatusCode != tc.status && (tc.alsoStatus == 0 || resp.StatusCode != tc.alsoStatus) {
				problems = append(problems, fmt.Sprintf("%d %q, want %d", resp.StatusCode, body, tc.status))
			} else if tc.check != nil {
				if p := tc.check(resp, body); p != "" {
					problems = append(problems, p)
				}
			}
			// Rows are written before the answer, so a count right
			// after it sees them.
			if n := s.rows(t) - rows; n != 0 {
				problems = append(problems, fmt.Sprintf("%d rows stored", n))
			}
			if n := s.us.count() - us; n != 0 && !(tc.regionMaySee && n == 1) {
				problems = append(problems, fmt.Sprintf("%d requests reached region us", n))
			}
			if n := s.remote.count() - remote; n != 0 {
				problems = append(problems, fmt.Sprintf("%d requests reached the third party", n))
			}
			wantControl := 0
			if tc.reaches == reachesControl {
				wantControl = 1
				if string(body) != "control" {
					problems = append(problems, fmt.Sprintf("pass-through answered %q, want control's answer", body))
				}
			}
			if n := s.control.count() - control; n != wantControl {
				problems = append(problems, fmt.Sprintf("%d requests reached control, want %d", n, wantControl))
			}
			if tc.controlPath != "" && s.control.last() != tc.controlPath {
				problems = append(problems, fmt.Sprintf("control received %q, want %q", s.control.last(), tc.controlPath))
			}
			if len(problems) > 0 {
				t.Fatalf("%s\n%s", strings.Join(problems, "\n"), relTail(s.c.Logs(), 5))
			}
		})
	}
}

// Truncated request bodies are the client's fault: however many arrive,
// they must not open the region's breaker (default: 16 failures per 60s)
// and so take the region away from everyone else.
func TestMalformedTruncatedBodiesKeepTheRegion(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary; left out under -short")
	}
	s := newMalSetup(t, "")
	truncated := malRaw("POST", "/api/0/organizations/acme/issues/", []string{"Content-Type: application/json", "Content-Length: 500"}, `{"a":1}`)
	statuses := map[int]int{}
	for i := 0; i < 40; i++ {
		resp, _, err := rawExchange(s.addr, truncated, true)
		if err != nil {
			t.Fatal(err)
		}
		statuses[resp.StatusCode]++
	}
	resp, body, err := rawExchange(s.addr, malRaw("GET", "/api/0/organizations/acme/issues/", nil, ""), false)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != `{"region":"us"}` {
		t.Fatalf("after 40 truncated bodies (answers %v), a valid request got %d %s: truncated client bodies must not open the region's breaker", statuses, resp.StatusCode, body)
	}
	for status := range statuses {
		if status >= 500 {
			t.Fatalf("answers to truncated bodies: %v; a client's truncated body is never a 5xx", statuses)
		}
	}
}
