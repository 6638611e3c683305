package credproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/modules/internal/credentials"
	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

func slackIntegration(id int64) directory.Integration {
	return directory.Integration{ID: id, Provider: "slack", ExternalID: "T1", Metadata: json.RawMessage(`{"access_token":"xoxb-secret-token"}`)}
}

func assertFailure(t *testing.T, w interface {
	Result() *http.Response
}, status int) {
	t.Helper()
	resp := w.Result()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d", resp.StatusCode, status)
	}
	if got := resp.Header.Get(subnet.HeaderInternalProxyFailure); got != "true" {
		t.Fatalf("%s = %q, want true", subnet.HeaderInternalProxyFailure, got)
	}
	var b strings.Builder
	_, _ = fmt.Fprint(&b, resp.Body)
	if resp.ContentLength > 0 {
		t.Fatalf("failure with a body of %d bytes", resp.ContentLength)
	}
}

// Case 24 (and 31, 35, 36): a signed Slack call is forwarded with the
// token, and the answer comes back unchanged, minus subnet and failure
// headers.
func TestForwardSlack(t *testing.T) {
	tp := newThirdParty(t)
	tp.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Sentry-Subnet-Signature", "leak")
		w.Header().Set(subnet.HeaderInternalProxyFailure, "true")
		w.Header().Set("X-Custom", "kept")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"ok":true}`)
	})
	f := newFixture(t, credentials.Config{})
	f.store.add(10, slackIntegration(5))
	body := `{"channel":"C1","text":"hi"}`
	w := f.do(t, call{base: tp.URL + "/api", path: "chat.postMessage?foo=bar&x=1&x=2", oi: "10", body: body, header: map[string]string{
		"Content-Type":        "application/json",
		"X-Custom-Caller":     "yes",
		"Content-Encoding":    "zstd",
		"X-Forwarded-Proto":   "https",
		subnet.HeaderTimeout:  "3,30",
		subnet.HeaderKeyID:    "k1",
		"Proxy-Authorization": "nope",
	}})
	resp := w.Result()
	if resp.StatusCode != http.StatusCreated || w.Body.String() != `{"ok":true}` {
		t.Fatalf("got %d %q", resp.StatusCode, w.Body.String())
	}
	if resp.Header.Get(subnet.HeaderInternalProxyFailure) != "false" {
		t.Fatalf("failure header %q", resp.Header.Values(subnet.HeaderInternalProxyFailure))
	}
	for _, h := range []string{"X-Sentry-Subnet-Signature", "Connection"} {
		if resp.Header.Get(h) != "" {
			t.Errorf("response header %s leaked", h)
		}
	}
	if resp.Header.Get("X-Custom") != "kept" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("response headers lost: %v", resp.Header)
	}
	got := tp.last(t)
	if got.Method != http.MethodPost || got.URI != "/api/chat.postMessage?foo=bar&x=1&x=2" || got.Body != body {
		t.Fatalf("outbound %s %s %q", got.Method, got.URI, got.Body)
	}
	if got.Header.Get("Authorization") != "Bearer xoxb-secret-token" {
		t.Fatalf("Authorization %q", got.Header.Get("Authorization"))
	}
	if got.Header.Get("Content-Type") != "application/json" || got.Header.Get("X-Custom-Caller") != "yes" {
		t.Fatalf("caller headers lost: %v", got.Header)
	}
	for k := range got.Header {
		if strings.HasPrefix(k, "X-Sentry-") || k == "Content-Encoding" || k == "X-Forwarded-Proto" || k == "Proxy-Authorization" {
			t.Errorf("header %s reached the third party", k)
		}
	}
	if !strings.HasPrefix(got.Host, "127.0.0.1:") {
		t.Errorf("Host %q", got.Host)
	}
}

// Cases 25-28 and the other rejections: 400, empty body, failure header,
// no outbound call, and no database read before the signature is checked.
func TestRejections(t *testing.T) {
	tp := newThirdParty(t)
	f := newFixture(t, credentials.Config{})
	f.store.add(10, slackIntegration(5))
	f.store.add(11, slackIntegration(6))
	f.store.orgInts[11] = directory.OrganizationIntegration{ID: 11, IntegrationID: 6, Status: 1}
	f.store.add(12, directory.Integration{ID: 7, Provider: "slack", Status: 1, Metadata: json.RawMessage(`{"access_token":"x"}`)})
	f.store.add(13, directory.Integration{ID: 8, Provider: "jira", Metadata: json.RawMessage(`{}`)})
	f.store.add(14, directory.Integration{ID: 9, Provider: "slack", Metadata: json.RawMessage(`{"access_token":"x"}`)})
	base := tp.URL + "/api"
	// Counts before this test, by provider/reason (the counter is the
	// process's).
	rejected := map[string]float64{}
	for _, k := range []string{"none/invalid_sender_headers", "none/invalid_sender_signature", "none/invalid_org_integration_headers",
		"none/invalid_target", "none/invalid_org_integration", "none/invalid_integration", "other/invalid_client"} {
		provider, reason, _ := strings.Cut(k, "/")
		rejected[k] = testutil.ToFloat64(rejectionsTotal.WithLabelValues(provider, reason))
	}
	cases := []struct {
		name     string
		c        call
		dbReads  bool
		provider string // the provider label it is counted under
		reason   string // the rejection reason counted and logged
	}{
		{"missing signature", call{base: base, path: "chat.postMessage", oi: "10", unsigned: true}, false, "none", "invalid_sender_headers"},
		{"missing oi", call{base: base, path: "chat.postMessage"}, false, "none", "invalid_sender_headers"},
		{"missing base", call{path: "chat.postMessage", oi: "10"}, false, "none", "invalid_sender_headers"},
		{"bad signature", call{base: base, path: "chat.postMessage", oi: "10", sig: "v0=" + strings.Repeat("0", 64)}, false, "none", "invalid_sender_signature"},
		{"body altered", call{base: base, path: "chat.postMessage", oi: "10", body: "altered", sig: subnet.Sign(testSecret, base, "chat.postMessage", "10", []byte("original"))}, false, "none", "invalid_sender_signature"},
		{"oi None", call{base: base, path: "chat.postMessage", oi: "None"}, false, "none", "invalid_org_integration_headers"},
		{"oi negative", call{base: base, path: "chat.postMessage", oi: "-10"}, false, "none", "invalid_org_integration_headers"},
		{"oi with spaces", call{base: base, path: "chat.postMessage", oi: " 10"}, false, "none", "invalid_org_integration_headers"},
		{"oi too big", call{base: base, path: "chat.postMessage", oi: "99999999999999999999"}, false, "none", "invalid_org_integration_headers"},
		{"path with scheme", call{base: base, path: "https://evil.com/x", oi: "10"}, false, "none", "invalid_target"},
		{"path with authority", call{base: base, path: "//evil.com/x", oi: "10"}, false, "none", "invalid_target"},
		{"path leaving base", call{base: base, path: "../../etc", oi: "10"}, false, "none", "invalid_target"},
		{"path leaving base, encoded", call{base: base, path: "a/%2e%2e/%2E%2E/x", oi: "10"}, false, "none", "invalid_target"},
		{"path with encoded slash", call{base: base, path: "a%2f..%2f..%2fx", oi: "10"}, false, "none", "invalid_target"},
		{"path with backslash", call{base: base, path: "\\\\evil.com/x", oi: "10"}, false, "none", "invalid_target"},
		{"base without scheme", call{base: "slack.com/api", path: "x", oi: "10"}, false, "none", "invalid_target"},
		{"base with userinfo", call{base: "http://u:p@127.0.0.1/api", path: "x", oi: "10"}, false, "none", "invalid_target"},
		{"base ftp", call{base: "ftp://127.0.0.1/api", path: "x", oi: "10"}, false, "none", "invalid_target"},
		{"unknown oi", call{base: base, path: "chat.postMessage", oi: "999"}, true, "none", "invalid_org_integration"},
		{"oi disabled", call{base: base, path: "chat.postMessage", oi: "11"}, true, "none", "invalid_org_integration"},
		{"integration disabled", call{base: base, path: "chat.postMessage", oi: "12"}, true, "none", "invalid_integration"},
		{"provider without client", call{base: base, path: "x", oi: "13"}, true, "other", "invalid_client"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := f.store.reads.Load()
			w := f.do(t, c.c)
			assertFailure(t, w, http.StatusBadRequest)
			if tp.count() != 0 {
				t.Fatal("a rejected call reached the third party")
			}
			if read := f.store.reads.Load() != before; read != c.dbReads {
				t.Fatalf("database read: %v, want %v", read, c.dbReads)
			}
			if got := testutil.ToFloat64(rejectionsTotal.WithLabelValues(c.provider, c.reason)) - rejected[c.provider+"/"+c.reason]; got != 1 {
				t.Fatalf("counted %v rejections %s/%s, want 1", got, c.provider, c.reason)
			}
			rejected[c.provider+"/"+c.reason]++
		})
	}
	// Each reason is logged at info, with the reason and never a secret.
	for key := range rejected {
		found := false
		for _, e := range f.logs.FilterMessage("integration proxy request rejected").All() {
			m := e.ContextMap()
			found = found || (e.Level == zap.InfoLevel && fmt.Sprint(m["provider"], "/", m["reason"]) == key)
		}
		if !found {
			t.Errorf("no info line for the rejection %s", key)
		}
	}
	if strings.Contains(f.logText(), testSecret) || strings.Contains(f.logText(), "v0=") {
		t.Errorf("a rejection logged a secret or a signature:\n%s", f.logText())
	}

	// Base-URL not owned by the integration: slack.com only.
	strict := newFixture(t, credentials.Config{}, "10.9.9.9")
	strict.store.add(10, slackIntegration(5))
	for _, b := range []string{tp.URL + "/api", "https://evil.com/api", "https://slack.com.evil.com/api", "http://slack.com/api", "https://slack.com:444/api"} {
		assertFailure(t, strict.do(t, call{base: b, path: "chat.postMessage", oi: "10"}), http.StatusBadRequest)
	}
	if tp.count() != 0 {
		t.Fatal("a call to a foreign host went out")
	}

	// No subnet secret: everything is refused.
	f.proxy.secret = func() string { return "" }
	assertFailure(t, f.do(t, call{base: base, path: "chat.postMessage", oi: "10"}), http.StatusBadRequest)
	if tp.count() != 0 {
		t.Fatal("call went out without a secret")
	}
}

// Case 32: the normalised forms sign the same.
func TestSignatureNormalisation(t *testing.T) {
	tp := newThirdParty(t)
	f := newFixture(t, credentials.Config{})
	f.store.add(10, slackIntegration(5))
	sig := subnet.Sign(testSecret, tp.URL+"/api", "chat.postMessage", "10", nil)
	w := f.do(t, call{base: tp.URL + "/api/", path: "/chat.postMessage", oi: "10", sig: sig})
	if w.Code != 200 || tp.last(t).URI != "/api/chat.postMessage" {
		t.Fatalf("%d %s", w.Code, tp.last(t).URI)
	}
}

// Case 29 and redirects: third-party statuses pass through, not followed.
func TestThirdPartyStatusesPassThrough(t *testing.T) {
	tp := newThirdParty(t)
	f := newFixture(t, credentials.Config{})
	f.store.add(10, slackIntegration(5))
	for _, status := range []int{404, 500, 502, 302, 429} {
		tp.handle(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "https://zombo.com")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"detail":"status %d"}`, status)
		})
		w := f.do(t, call{method: http.MethodGet, base: tp.URL + "/api", path: "x", oi: "10"})
		if w.Code != status || w.Body.String() != fmt.Sprintf(`{"detail":"status %d"}`, status) || w.Header().Get(subnet.HeaderInternalProxyFailure) != "false" {
			t.Fatalf("status %d: got %d %q %q", status, w.Code, w.Body.String(), w.Header().Get(subnet.HeaderInternalProxyFailure))
		}
	}
	if tp.count() != 5 {
		t.Fatalf("redirect followed: %d calls", tp.count())
	}
}

// Case 30 and 34: unreachable 503, timeout 504, X-Sentry-Subnet-Timeout
// honoured, unparseable timeout means the default.
func TestUnreachableAndTimeouts(t *testing.T) {
	tp := newThirdParty(t)
	tp.handle(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		w.WriteHeader(200)
	})
	f := newFixture(t, credentials.Config{})
	f.proxy.readTimeout = 100 * time.Millisecond
	f.store.add(10, slackIntegration(5))

	closed := harness.ReservePort(t).URL() // reserved, and nothing listens there
	assertFailure(t, f.do(t, call{base: closed, path: "x", oi: "10"}), http.StatusServiceUnavailable)

	start := time.Now()
	assertFailure(t, f.do(t, call{base: tp.URL, path: "x", oi: "10"}), http.StatusGatewayTimeout)
	assertFailure(t, f.do(t, call{base: tp.URL, path: "x", oi: "10", header: map[string]string{subnet.HeaderTimeout: "abc"}}), http.StatusGatewayTimeout)
	assertFailure(t, f.do(t, call{base: tp.URL, path: "x", oi: "10", header: map[string]string{subnet.HeaderTimeout: "3,0.05"}}), http.StatusGatewayTimeout)
	// The bound is the behaviour: three timeouts of at most 100ms, not
	// three 300ms answers; the rest of 2s is margin for a loaded machine.
	if time.Since(start) > 2*time.Second {
		t.Fatal("timeouts took too long")
	}
	if w := f.do(t, call{base: tp.URL, path: "x", oi: "10", header: map[string]string{subnet.HeaderTimeout: "1,2"}}); w.Code != 200 {
		t.Fatalf("with a longer timeout: %d", w.Code)
	}
	if w := f.do(t, call{base: tp.URL, path: "x", oi: "10", header: map[string]string{subnet.HeaderTimeout: "2"}}); w.Code != 200 {
		t.Fatalf("with a single timeout: %d", w.Code)
	}

	// A read timeout between body chunks is a timeout too; the status is
	// sent by then, so the response is cut short.
	tp.handle(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		time.Sleep(300 * time.Millisecond)
		fmt.Fprint(w, "late")
	})
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Fatalf("mid-stream timeout: recovered %v", v)
			}
		}()
		f.do(t, call{base: tp.URL, path: "x", oi: "10"})
	}()
}

func TestBodyTooLarge(t *testing.T) {
	tp := newThirdParty(t)
	f := newFixture(t, credentials.Config{})
	f.store.add(10, slackIntegration(5))
	big := strings.Repeat("x", int(f.proxy.maxBodySize)+1)
	assertFailure(t, f.do(t, call{base: tp.URL, path: "x", oi: "10", body: big}), http.StatusRequestEntityTooLarge)
	if tp.count() != 0 {
		t.Fatal("oversized body forwarded")
	}
}

// SSRF: a host the integration owns (GitLab's metadata base_url) that
// resolves to loopback is refused at dial time unless allow_host names it.
func TestDialRefusesLoopback(t *testing.T) {
	tp := newThirdParty(t)
	port := tp.Listener.Addr().(*net.TCPAddr).Port
	f := newFixture(t, credentials.Config{}, "10.9.9.9")
	id := int64(30)
	f.store.identities[id] = json.RawMessage(`{"access_token":"glat","expires":9999999999}`)
	for i, host := range []string{"localhost", "127.0.0.1", "[::1]", "0.0.0.0"} {
		base := fmt.Sprintf("http://%s:%d", host, port)
		f.store.add(int64(20+i), directory.Integration{ID: int64(40 + i), Provider: "gitlab", Metadata: json.RawMessage(fmt.Sprintf(`{"base_url":%q}`, base))})
		oi := f.store.orgInts[int64(20+i)]
		oi.DefaultAuthID = &id
		f.store.orgInts[int64(20+i)] = oi
		assertFailure(t, f.do(t, call{base: base + "/api/v4", path: "projects", oi: fmt.Sprint(20 + i)}), http.StatusServiceUnavailable)
	}
	if tp.count() != 0 {
		t.Fatal("a loopback target was reached")
	}
	if !strings.Contains(f.logText(), "address refused") {
		t.Fatalf("no refusal logged:\n%s", f.logText())
	}
	for _, ip := range []string{"169.254.169.254", "fd00:ec2::254", "127.0.0.1", "::1", "fe80::1", "0.1.2.3", "::ffff:127.0.0.1"} {
		if dialPolicy.Control("tcp", net.JoinHostPort(ip, "80"), nil) == nil {
			t.Errorf("%s allowed", ip)
		}
	}
	for _, ip := range []string{"10.0.0.5", "192.168.1.1", "140.82.112.5", "2606:4700::1"} {
		if dialPolicy.Control("tcp", net.JoinHostPort(ip, "443"), nil) != nil {
			t.Errorf("%s refused", ip)
		}
	}
}

// Case 33: an expired GitHub token is refreshed through the App JWT,
// persisted, and reused by the next call. Fifty concurrent calls make
// one refresh.
func TestGitHubRefreshThroughProxy(t *testing.T) {
	tp := newThirdParty(t)
	var minted atomic.Int64
	tp.handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/app/installations/555/access_tokens" {
			time.Sleep(20 * time.Millisecond)
			n := minted.Add(1)
			w.WriteHeader(201)
			fmt.Fprintf(w, `{"token":"ghs_minted%d","expires_at":"%s"}`, n, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
			return
		}
		if r.Header.Get("Authorization") != "Bearer ghs_minted1" {
			w.WriteHeader(401)
			return
		}
		fmt.Fprint(w, `[{"sha":"abc"}]`)
	})
	f := newFixture(t, credentials.Config{GitHubAppID: "1", GitHubPrivateKey: testKey(t)})
	f.store.add(10, directory.Integration{ID: 5, Provider: "github", ExternalID: "555",
		Metadata: json.RawMessage(`{"access_token":"ghs_old","expires_at":"2020-01-01T00:00:00","sender":{"login":"x"}}`)})
	var wg sync.WaitGroup
	codes := make(chan int, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- f.do(t, call{method: "GET", base: tp.URL, path: "repos/o/r/commits?sha=abc", oi: "10"}).Code
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("status %d", c)
		}
	}
	if minted.Load() != 1 {
		t.Fatalf("%d refreshes, want 1", minted.Load())
	}
	md := f.store.metadata(5)
	if md["access_token"] != "ghs_minted1" || md["sender"] == nil {
		t.Fatalf("metadata %v", md)
	}
	if got := tp.last(t); got.URI != "/repos/o/r/commits?sha=abc" || got.Header.Get("Accept") != "application/vnd.github+json" {
		t.Fatalf("outbound %s %v", got.URI, got.Header)
	}
	if strings.Contains(f.logText(), "ghs_") {
		t.Fatal("a token reached the log")
	}
}

// One 401 triggers one forced refresh and one retry with the same body.
func TestUnauthorizedRefreshesAndRetries(t *testing.T) {
	tp := newThirdParty(t)
	var refreshes atomic.Int64
	tp.handle(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/oauth/token":
			n := refreshes.Add(1)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"access_token":"glat_new%d","refresh_token":"glrt_new","expires_in":7200}`, n)
		case r.Header.Get("Authorization") == "Bearer glat_new1":
			fmt.Fprint(w, "ok")
		default:
			w.WriteHeader(401)
		}
	})
	authID := int64(77)
	f := newFixture(t, credentials.Config{OAuth: map[string]credentials.OAuthClient{"gitlab": {ClientID: "c", ClientSecret: "s", TokenURL: tp.URL + "/oauth/token"}}})
	f.store.identities[authID] = json.RawMessage(`{"access_token":"glat_revoked","refresh_token":"glrt","expires":9999999999}`)
	f.store.add(10, directory.Integration{ID: 5, Provider: "gitlab", Metadata: json.RawMessage(`{}`)})
	oi := f.store.orgInts[10]
	oi.DefaultAuthID = &authID
	f.store.orgInts[10] = oi

	w := f.do(t, call{method: "PUT", base: tp.URL + "/api/v4", path: "projects/1", oi: "10", body: `{"name":"x"}`})
	if w.Code != 200 || w.Body.String() != "ok" || refreshes.Load() != 1 {
		t.Fatalf("%d %q after %d refreshes\n%s", w.Code, w.Body.String(), refreshes.Load(), f.logText())
	}
	if got := tp.last(t); got.Body != `{"name":"x"}` || got.Method != "PUT" {
		t.Fatalf("retry sent %s %q", got.Method, got.Body)
	}
	// A 401 that survives the refresh is the third party's answer.
	tp.handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth/token" {
			refreshes.Add(1)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"access_token":"glat_other","expires_in":7200}`)
			return
		}
		w.WriteHeader(401)
	})
	n := tp.count()
	w = f.do(t, call{method: "GET", base: tp.URL + "/api/v4", path: "projects/1", oi: "10"})
	if w.Code != 401 || w.Header().Get(subnet.HeaderInternalProxyFailure) != "false" || tp.count()-n != 3 {
		t.Fatalf("%d after %d calls", w.Code, tp.count()-n)
	}
}

// A failed refresh is the proxy's failure: 502 (endpoint down) or 400
// (grant refused), the failure header, and a log line without secrets.
func TestRefreshFailure(t *testing.T) {
	tp := newThirdParty(t)
	var status atomic.Int64
	tp.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(status.Load()))
		fmt.Fprint(w, `{"error":"invalid_grant","error_description":"glrt-super-secret is revoked"}`)
	})
	authID := int64(77)
	f := newFixture(t, credentials.Config{OAuth: map[string]credentials.OAuthClient{"gitlab": {ClientID: "c", ClientSecret: "client-secret-xyz", TokenURL: tp.URL + "/oauth/token"}}})
	f.store.identities[authID] = json.RawMessage(`{"access_token":"glat-expired-secret","refresh_token":"glrt-super-secret","expires":1}`)
	f.store.add(10, directory.Integration{ID: 5, Provider: "gitlab", Metadata: json.RawMessage(`{}`)})
	oi := f.store.orgInts[10]
	oi.DefaultAuthID = &authID
	f.store.orgInts[10] = oi

	status.Store(503)
	assertFailure(t, f.do(t, call{base: tp.URL + "/api/v4", path: "projects", oi: "10"}), http.StatusBadGateway)
	status.Store(400)
	assertFailure(t, f.do(t, call{base: tp.URL + "/api/v4", path: "projects", oi: "10"}), http.StatusBadRequest)
	if tp.count() != 2 {
		t.Fatalf("%d calls: the original request went out after a failed refresh", tp.count())
	}
	logs := f.logText()
	if !strings.Contains(logs, "token refresh failed") || !strings.Contains(logs, "503") {
		t.Fatalf("no clear log line:\n%s", logs)
	}
	for _, secret := range []string{"glrt-super-secret", "client-secret-xyz", "glat-expired-secret", testSecret} {
		if strings.Contains(logs, secret) {
			t.Fatalf("log leaks %q:\n%s", secret, logs)
		}
	}
}

// failingStore fails every read as an unreachable database does.
type failingStore struct{ *memLookups }

func (failingStore) IntegrationByID(context.Context, int64) (directory.Integration, error) {
	return directory.Integration{}, fmt.Errorf("sqlite integration: %w: disk I/O error", store.ErrUnavailable)
}

// A database that cannot be reached is the proxy's failure (503), for
// the directory lookups and for the token read alike; nothing goes out.
func TestStoreUnavailable(t *testing.T) {
	tp := newThirdParty(t)
	f := newFixture(t, credentials.Config{})
	f.store.add(10, slackIntegration(5))
	f.proxy.lookups = func() Lookups { return failingStore{f.store} }
	assertFailure(t, f.do(t, call{base: tp.URL + "/api", path: "x", oi: "10"}), http.StatusServiceUnavailable)

	g := newFixture(t, credentials.Config{})
	g.store.add(10, slackIntegration(5))
	g.proxy.creds = credentials.New(credentials.Config{}, func() credentials.Store { return failingStore{g.store} })
	assertFailure(t, g.do(t, call{base: tp.URL + "/api", path: "x", oi: "10"}), http.StatusServiceUnavailable)
	f.proxy.lookups = func() Lookups { return nil }
	assertFailure(t, f.do(t, call{base: tp.URL + "/api", path: "x", oi: "10"}), http.StatusServiceUnavailable)
	if tp.count() != 0 {
		t.Fatal("a call went out without its integration")
	}
}
