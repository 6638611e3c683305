package integration_tests

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

// Cases 24, 29, 31, 35, 36 of §7 and the per-provider credentials, on
// the real binary.
func TestCredProxyForwards(t *testing.T) {
	s := newCredSetup(t, credOptions{})
	tp := s.tp.URL()

	t.Run("slack (24, 35, 36)", func(t *testing.T) {
		h := http.Header{"Content-Type": {"application/json"}, "X-Custom": {"kept"}, "Content-Encoding": {"identity"},
			"X-Forwarded-Proto": {"https"}, subnet.HeaderTimeout: {"3,30"}}
		body := `{"channel":"C1","text":"hi"}`
		resp, got := s.call(t, 0, http.MethodPost, tp+"/api/chat.postMessage?foo=bar", tp+"/api", oiSlack, body, h)
		if resp.StatusCode != 200 || resp.Header.Get(subnet.HeaderInternalProxyFailure) != "false" {
			t.Fatalf("%d %s failure=%q", resp.StatusCode, got, resp.Header.Values(subnet.HeaderInternalProxyFailure))
		}
		var echo map[string]string
		if err := json.Unmarshal(got, &echo); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		if echo["auth"] != "Bearer "+credSlackToken || echo["uri"] != "/api/chat.postMessage?foo=bar" || echo["method"] != "POST" || echo["body"] != body {
			t.Fatalf("third party saw %v", echo)
		}
		for k := range resp.Header {
			if strings.HasPrefix(k, "X-Sentry-Subnet-") {
				t.Errorf("response carries %s", k)
			}
		}
		if resp.Header.Get("X-Upstream") != "yes" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("third-party headers lost: %v", resp.Header)
		}
		seen, _ := s.tp.last(t)
		if seen.Header.Get("Content-Type") != "application/json" || seen.Header.Get("X-Custom") != "kept" {
			t.Errorf("caller headers lost: %v", seen.Header)
		}
		for k := range seen.Header {
			if strings.HasPrefix(k, "X-Sentry-") || k == "Content-Encoding" || k == "X-Forwarded-Proto" {
				t.Errorf("%s reached the third party", k)
			}
		}
		if seen.Host != strings.TrimPrefix(tp, "http://") {
			t.Errorf("Host %q", seen.Host)
		}
	})

	t.Run("third-party 404 passes through (29)", func(t *testing.T) {
		resp, got := s.call(t, 0, http.MethodGet, tp+"/api/missing", tp+"/api", oiSlack, "", nil)
		if resp.StatusCode != 404 || string(got) != `{"message":"Not Found"}` || resp.Header.Get(subnet.HeaderInternalProxyFailure) != "false" {
			t.Fatalf("%d %s %q", resp.StatusCode, got, resp.Header.Get(subnet.HeaderInternalProxyFailure))
		}
	})

	t.Run("trailing slash and no trailing slash", func(t *testing.T) {
		for _, p := range []string{subnet.ProxyPath, strings.TrimSuffix(subnet.ProxyPath, "/")} {
			h := signedHeader(tp+"/api", "auth.test", fmt.Sprint(oiSlack), "")
			req, _ := http.NewRequest(http.MethodGet, s.bases[0]+p, nil)
			req.Header = h
			resp, got := s.send(t, req)
			if resp.StatusCode != 200 || !strings.Contains(string(got), `"uri":"/api/auth.test"`) {
				t.Fatalf("%s: %d %s", p, resp.StatusCode, got)
			}
		}
	})

	t.Run("github query kept (31), accept rules, JWT paths", func(t *testing.T) {
		resp, got := s.call(t, 0, http.MethodGet, tp+"/repos/o/r/commits?sha=abc", tp, oiGitHub, "", nil)
		if resp.StatusCode != 200 || !strings.Contains(string(got), `"uri":"/repos/o/r/commits?sha=abc"`) {
			t.Fatalf("%d %s", resp.StatusCode, got)
		}
		seen, _ := s.tp.last(t)
		if seen.Header.Get("Accept") != "application/vnd.github+json" {
			t.Fatalf("Accept %q", seen.Header.Get("Accept"))
		}
		resp, _ = s.call(t, 0, http.MethodGet, tp+"/repos/o/r/contents/a", tp, oiGitHub, "", http.Header{"Content-Type": {"application/raw; charset=utf-8"}})
		seen, _ = s.tp.last(t)
		if resp.StatusCode != 200 || seen.Header.Get("Accept") != "application/vnd.github.raw" {
			t.Fatalf("%d Accept %q", resp.StatusCode, seen.Header.Get("Accept"))
		}
		// The app endpoints get the App JWT, not the installation token.
		before := s.tp.githubMint.Load()
		resp, got = s.call(t, 0, http.MethodPost, tp+"/app/installations/555/access_tokens", tp, oiGitHub, "", nil)
		if resp.StatusCode != 201 || !strings.Contains(string(got), "ghs_minted_") || s.tp.githubMint.Load() != before+1 {
			t.Fatalf("JWT path: %d %s", resp.StatusCode, got)
		}
	})

	t.Run("discord bot token", func(t *testing.T) {
		resp, got := s.call(t, 0, http.MethodPost, tp+"/api/v10/channels/1/messages", tp+"/api/v10", oiDiscord, `{"content":"x"}`, nil)
		if resp.StatusCode != 200 || !strings.Contains(string(got), `"auth":"Bot `+credDiscordToken+`"`) {
			t.Fatalf("%d %s", resp.StatusCode, got)
		}
	})

	t.Run("msteams client credentials", func(t *testing.T) {
		resp, got := s.call(t, 0, http.MethodPost, tp+"/teams/v3/conversations/1/activities", tp+"/teams", oiMSTeams, `{"type":"message"}`, nil)
		if resp.StatusCode != 200 || !strings.Contains(string(got), `"auth":"Bearer teams_minted_1"`) {
			t.Fatalf("%d %s", resp.StatusCode, got)
		}
		md := s.metadataOf(t, 40)
		exp, _ := md["expires_at"].(float64)
		if md["access_token"] != "teams_minted_1" || md["service_url"] != tp+"/teams/" ||
			time.Unix(int64(exp), 0).Sub(time.Now().Add(3600*time.Second-300*time.Second)).Abs() > 30*time.Second {
			t.Fatalf("metadata %v", md)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get("http://" + s.instances[0].AdminAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, want := range []string{
			`caddy_sentry_credproxy_requests_total{outcome="forwarded",provider="slack"}`,
			`caddy_sentry_credproxy_token_refreshes_total{outcome="ok",provider="github"}`,
			`caddy_sentry_credproxy_token_refreshes_total{outcome="ok",provider="msteams"}`,
		} {
			if !strings.Contains(string(b), want) {
				t.Errorf("metrics lack %s:\n%s", want, grepLines(string(b), "credproxy"))
			}
		}
	})

	assertNoSecretsLogged(t, s.logs())
}

// Cases 25-28, the not-an-open-proxy rules and SSRF: every rejection is
// 400 (or 503 for a refused address), empty, flagged, and no request
// reaches the third party.
func TestCredProxyRejections(t *testing.T) {
	s := newCredSetup(t, credOptions{})
	tp := s.tp.URL()
	oi := fmt.Sprint(oiSlack)
	base := tp + "/api"
	without := func(h http.Header, k string) http.Header { h.Del(k); return h }
	cases := []struct {
		name   string
		header http.Header
		body   string
		status int
	}{
		{"missing signature (25)", without(signedHeader(base, "chat.postMessage", oi, ""), subnet.HeaderSignature), "", 400},
		{"missing organization integration (25)", without(signedHeader(base, "chat.postMessage", oi, ""), subnet.HeaderOrganizationIntegration), "", 400},
		{"missing base url (25)", without(signedHeader(base, "chat.postMessage", oi, ""), subnet.HeaderBaseURL), "", 400},
		{"body altered after signing (26)", signedHeader(base, "chat.postMessage", oi, `{"text":"a"}`), `{"text":"b"}`, 400},
		{"wrong secret", func() http.Header {
			h := signedHeader(base, "chat.postMessage", oi, "")
			h.Set(subnet.HeaderSignature, subnet.Sign("other-secret", base, "chat.postMessage", oi, nil))
			return h
		}(), "", 400},
		{"organization integration None (27)", signedHeader(base, "chat.postMessage", "None", ""), "", 400},
		{"unknown organization integration", signedHeader(base, "chat.postMessage", "999999", ""), "", 400},
		{"integration disabled (28)", signedHeader(base, "chat.postMessage", fmt.Sprint(oiSlackDisabled), ""), "", 400},
		{"organization integration disabled (28)", signedHeader(base, "chat.postMessage", fmt.Sprint(oiSlackOIOff), ""), "", 400},
		{"provider without a proxy client", signedHeader(base, "x", fmt.Sprint(oiJira), ""), "", 400},
		{"path with a scheme", signedHeader(base, "https://evil.example/x", oi, ""), "", 400},
		{"path with an authority", signedHeader(base, "//evil.example/x", oi, ""), "", 400},
		{"path leaving the base", signedHeader(base, "../../x", oi, ""), "", 400},
		{"encoded dot segments", signedHeader(base, "a/%2e%2e/%2e%2e/x", oi, ""), "", 400},
		{"host not the integration's", signedHeader("https://evil.example/api", "x", oi, ""), "", 400},
		{"slack base on another port of a foreign host", signedHeader("http://127.0.0.2:1/api", "x", oi, ""), "", 400},
		{"owned host resolving to loopback", signedHeader("http://localhost:"+strings.TrimPrefix(tp, "http://127.0.0.1:"), "api/v4/projects", fmt.Sprint(oiGitLabLoopback), ""), "", 503},
		{"cloud metadata address", signedHeader("http://169.254.169.254", "latest/meta-data/", fmt.Sprint(oiGitLabMetadata), ""), "", 503},
		{"body too large", signedHeader(base, "x", oi, ""), strings.Repeat("x", 16<<20+1), 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := s.tp.count()
			resp, body := s.raw(t, http.MethodPost, c.header, c.body)
			wantProxyFailure(t, resp, body, c.status)
			if n := s.tp.count() - before; n != 0 {
				t.Fatalf("%d requests reached the third party", n)
			}
		})
	}
	if n := len(s.control.requests()); n != 0 {
		t.Fatalf("%d proxy requests fell through to control", n)
	}
	assertNoSecretsLogged(t, s.logs())
}

// Case 33: an expired GitHub installation token is replaced through the
// App JWT, persisted (merged) in sentry_integration.metadata, and reused.
func TestCredProxyGitHubRefresh(t *testing.T) {
	s := newCredSetup(t, credOptions{})
	tp := s.tp.URL()
	resp, got := s.call(t, 0, http.MethodGet, tp+"/repos/o/r", tp, oiGitHub, "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(got), `"auth":"Bearer ghs_minted_1"`) {
		t.Fatalf("%d %s", resp.StatusCode, got)
	}
	s.tp.mu.Lock()
	first := s.tp.seen[0]
	s.tp.mu.Unlock()
	if first.Method != http.MethodPost || first.RequestURI != "/app/installations/555/access_tokens" {
		t.Fatalf("first outbound call %s %s", first.Method, first.RequestURI)
	}
	md := s.metadataOf(t, 20)
	exp, err := time.Parse("2006-01-02T15:04:05", fmt.Sprint(md["expires_at"]))
	if md["access_token"] != "ghs_minted_1" || err != nil || exp.Before(time.Now().Add(50*time.Minute)) || md["sender"] == nil {
		t.Fatalf("metadata after refresh: %v", md)
	}
	resp, got = s.call(t, 0, http.MethodGet, tp+"/repos/o/r", tp, oiGitHub, "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(got), "ghs_minted_1") || s.tp.githubMint.Load() != 1 {
		t.Fatalf("second call: %d %s after %d mints", resp.StatusCode, got, s.tp.githubMint.Load())
	}
	assertNoSecretsLogged(t, s.logs())
}

// One 401 from the third party: one forced refresh, one retry with the
// same body, and the new token persisted in sentry_identity.data.
func TestCredProxyUnauthorizedRetry(t *testing.T) {
	s := newCredSetup(t, credOptions{})
	tp := s.tp.URL()
	// A token that looks valid but that the third party no longer takes.
	mustExec(t, s.db, fmt.Sprintf(`UPDATE sentry_identity SET data = '{"access_token":"%s","refresh_token":"%s","expires":9999999999}' WHERE id = 300`, credGitLabRevoked, credGitLabRefresh))
	s.tp.revoked.Store(credGitLabRevoked, true)
	body := `{"title":"bug"}`
	resp, got := s.call(t, 0, http.MethodPost, tp+"/api/v4/projects/1/issues", tp+"/api/v4", oiGitLab, body, http.Header{"Content-Type": {"application/json"}})
	if resp.StatusCode != 200 || !strings.Contains(string(got), `"auth":"Bearer glat_minted_1"`) || !strings.Contains(string(got), `"body":"{\"title\":\"bug\"}"`) {
		t.Fatalf("%d %s", resp.StatusCode, got)
	}
	if s.tp.gitlabMint.Load() != 1 || s.tp.count() != 3 {
		t.Fatalf("%d refreshes, %d calls; want 1 and 3 (401, token, retry)", s.tp.gitlabMint.Load(), s.tp.count())
	}
	data := s.identityOf(t, 300)
	if data["access_token"] != "glat_minted_1" || data["refresh_token"] != "glrt_minted_1" {
		t.Fatalf("identity after refresh: %v", data)
	}
	// An expired identity token is refreshed before the call.
	resp, got = s.call(t, 0, http.MethodGet, tp+"/api/v4/projects", tp+"/api/v4", oiGitLabExpired, "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(got), "glat_minted_2") || s.tp.gitlabMint.Load() != 2 {
		t.Fatalf("%d %s", resp.StatusCode, got)
	}
	if data := s.identityOf(t, 302); data["access_token"] != "glat_minted_2" || data["refresh_token"] != "glrt_minted_2" {
		t.Fatalf("identity 302 after refresh: %v", data)
	}
	assertNoSecretsLogged(t, s.logs())
}

// Disabling an organization integration or an integration takes effect
// within directory_cache (1s here).
func TestCredProxyDisableTakesEffect(t *testing.T) {
	s := newCredSetup(t, credOptions{})
	tp := s.tp.URL()
	if resp, got := s.call(t, 0, http.MethodGet, tp+"/api/auth.test", tp+"/api", oiSlack, "", nil); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, got)
	}
	// The sleeps are the behaviour under test: the change must be seen
	// once the cached entries (1s) have expired, whatever was asked
	// meanwhile; polling would ask meanwhile, and a call that goes out
	// before the integration's entry expires would look like a leak.
	mustExec(t, s.db, `UPDATE sentry_organizationintegration SET status = 1 WHERE id = 110`)
	time.Sleep(1100 * time.Millisecond)
	before := s.tp.count()
	resp, got := s.call(t, 0, http.MethodGet, tp+"/api/auth.test", tp+"/api", oiSlack, "", nil)
	wantProxyFailure(t, resp, got, 400)
	mustExec(t, s.db, `UPDATE sentry_organizationintegration SET status = 0 WHERE id = 110`)
	mustExec(t, s.db, `UPDATE sentry_integration SET status = 1 WHERE id = 10`)
	time.Sleep(1100 * time.Millisecond)
	resp, got = s.call(t, 0, http.MethodGet, tp+"/api/auth.test", tp+"/api", oiSlack, "", nil)
	wantProxyFailure(t, resp, got, 400)
	if s.tp.count() != before {
		t.Fatal("a call for a disabled integration went out")
	}
}

// A refresh that fails is the proxy's failure, with a log line that says
// what failed and holds no secret; the call itself is not sent.
func TestCredProxyRefreshFailure(t *testing.T) {
	s := newCredSetup(t, credOptions{})
	tp := s.tp.URL()
	s.tp.tokenFail.Store(503)
	resp, got := s.call(t, 0, http.MethodGet, tp+"/api/v4/projects", tp+"/api/v4", oiGitLab, "", nil)
	wantProxyFailure(t, resp, got, http.StatusBadGateway)
	s.tp.tokenFail.Store(400)
	resp, got = s.call(t, 0, http.MethodGet, tp+"/api/v4/projects", tp+"/api/v4", oiGitLab, "", nil)
	wantProxyFailure(t, resp, got, http.StatusBadRequest)
	if s.tp.count() != 2 {
		t.Fatalf("%d calls: only the two token requests may have gone out", s.tp.count())
	}
	waitFor(t, "the refresh failure log line", 5*time.Second, func() bool {
		return strings.Contains(s.logs(), "token refresh failed")
	})
	if !strings.Contains(s.logs(), "token endpoint answered 503") {
		t.Fatalf("log does not say why:\n%s", grepLines(s.logs(), "refresh"))
	}
	assertNoSecretsLogged(t, s.logs())
}

// Case 30 and 34: unreachable 503, timeout 504, the timeout header
// honoured, an unparseable one ignored.
func TestCredProxyTimeouts(t *testing.T) {
	s := newCredSetup(t, credOptions{})
	tp := s.tp.URL()
	closed := harness.ReservePort(t).URL() // reserved, and nothing listens there
	resp, got := s.call(t, 0, http.MethodGet, closed+"/api/x", closed+"/api", oiSlack, "", nil)
	wantProxyFailure(t, resp, got, http.StatusServiceUnavailable)

	s.tp.slow.Store(int64(time.Second))
	cases := []struct {
		header string
		status int
	}{
		{"0.3", 504},        // both 0.3 s
		{"1,0.3", 504},      // read 0.3 s
		{"abc", 200},        // default read 2 s
		{"1,3", 200},        // read 3 s
		{"3,0.2,9", 200},    // unparseable: default
		{"0.1, 0.25 ", 504}, // spaces allowed
	}
	for _, c := range cases {
		start := time.Now()
		resp, got := s.call(t, 0, http.MethodGet, tp+"/api/slow", tp+"/api", oiSlack, "", http.Header{subnet.HeaderTimeout: {c.header}})
		if c.status == 504 {
			wantProxyFailure(t, resp, got, 504)
			// The bound is the behaviour: the header's timeout (at
			// most 0.3s) fired, before the third party's answer at
			// 1s; 900ms leaves 600ms for a loaded machine.
			if d := time.Since(start); d > 900*time.Millisecond {
				t.Errorf("timeout %q took %v", c.header, d)
			}
		} else if resp.StatusCode != c.status || string(got) != "finally" {
			t.Errorf("timeout %q: %d %s", c.header, resp.StatusCode, got)
		}
	}
	// Without the header the configured read timeout (2s) applies.
	s.tp.slow.Store(int64(3500 * time.Millisecond))
	resp, got = s.call(t, 0, http.MethodGet, tp+"/api/slow", tp+"/api", oiSlack, "", nil)
	wantProxyFailure(t, resp, got, 504)
}

// Fifty concurrent calls at expiry make exactly one refresh.
func TestCredProxyOneRefreshUnderLoad(t *testing.T) {
	s := newCredSetup(t, credOptions{})
	s.tp.mintDelay.Store(int64(200 * time.Millisecond))
	concurrentCalls(t, s, 50, oiGitHub, func(i int) int { return 0 })
	if n := s.tp.githubMint.Load(); n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
}

// Two Caddy processes on one PostgreSQL database: fifty concurrent calls
// at expiry, spread over both, make exactly one GitHub refresh and one
// GitLab refresh; the second instance re-reads the token under the row
// lock and does not refresh again.
func TestCredProxyTwoInstancesOneRefresh(t *testing.T) {
	s := newCredSetup(t, credOptions{dsn: pgtest.DSN(t), instances: 2})
	s.tp.mintDelay.Store(int64(300 * time.Millisecond))
	concurrentCalls(t, s, 50, oiGitHub, func(i int) int { return i % 2 })
	if n := s.tp.githubMint.Load(); n != 1 {
		t.Fatalf("%d GitHub refreshes, want 1", n)
	}
	if md := s.metadataOf(t, 20); md["access_token"] != "ghs_minted_1" {
		t.Fatalf("metadata %v", md)
	}
	concurrentCalls(t, s, 50, oiGitLab, func(i int) int { return i % 2 })
	if n := s.tp.gitlabMint.Load(); n != 1 {
		t.Fatalf("%d GitLab refreshes, want 1", n)
	}
	if d := s.identityOf(t, 300); d["access_token"] != "glat_minted_1" {
		t.Fatalf("identity %v", d)
	}
	// Both instances served, and the one that did not refresh says so.
	for i, c := range s.instances {
		if !strings.Contains(metricsOf(t, c.AdminAddr), `caddy_sentry_credproxy_requests_total{outcome="forwarded",provider="github"}`) {
			t.Fatalf("instance %d served no GitHub call", i)
		}
	}
	all := metricsOf(t, s.instances[0].AdminAddr) + metricsOf(t, s.instances[1].AdminAddr)
	if !strings.Contains(all, `caddy_sentry_credproxy_token_refreshes_total{outcome="reused",provider="github"}`) {
		t.Fatalf("no instance reused the other's token:\n%s", grepLines(all, "refreshes"))
	}
	assertNoSecretsLogged(t, s.logs())
}

func concurrentCalls(t *testing.T, s *credSetup, n, oi int, instance func(int) int) {
	t.Helper()
	tp := s.tp.URL()
	base, path := tp, "/repos/o/r"
	if oi == oiGitLab {
		base, path = tp+"/api/v4", "/api/v4/projects"
	}
	var wg sync.WaitGroup
	errs := make(chan string, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			resp, got := s.call(t, instance(i), http.MethodGet, tp+path, base, oi, "", nil)
			if resp.StatusCode != 200 || !strings.Contains(string(got), "_minted_1") {
				errs <- fmt.Sprintf("call %d: %d %s", i, resp.StatusCode, got)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// In monolith mode the proxy path goes to the next handler untouched;
// without a subnet secret every proxy request is refused.
func TestCredProxyModeAndSecret(t *testing.T) {
	t.Run("monolith", func(t *testing.T) {
		s := newCredSetup(t, credOptions{mode: "monolith"})
		h := signedHeader(s.tp.URL()+"/api", "chat.postMessage", fmt.Sprint(oiSlack), "")
		resp, got := s.raw(t, http.MethodPost, h, "")
		if resp.StatusCode != 200 || string(got) != "hello from control" || resp.Header.Get(subnet.HeaderInternalProxyFailure) != "" {
			t.Fatalf("%d %s", resp.StatusCode, got)
		}
		if s.tp.count() != 0 {
			t.Fatal("monolith proxied")
		}
	})
	t.Run("no subnet secret", func(t *testing.T) {
		s := newCredSetup(t, credOptions{noSecret: true})
		h := signedHeader(s.tp.URL()+"/api", "chat.postMessage", fmt.Sprint(oiSlack), "")
		resp, got := s.raw(t, http.MethodPost, h, "")
		wantProxyFailure(t, resp, got, 400)
		if s.tp.count() != 0 {
			t.Fatal("proxied without a secret")
		}
		// Other paths still go on to control.
		req, _ := http.NewRequest(http.MethodGet, s.bases[0]+"/api/0/organizations/", nil)
		if resp, got := s.send(t, req); resp.StatusCode != 200 || string(got) != "hello from control" {
			t.Fatalf("%d %s", resp.StatusCode, got)
		}
	})
}

// A bad PEM fails the load with a clear message that does not print the
// key.
func TestCredProxyBadPrivateKey(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary; left out under -short")
	}
	s := newCredSetup(t, credOptions{})
	c := s.instances[0]
	bad := "-----BEGIN RSA PRIVATE KEY-----\nTm90QUtleVNlY3JldE1hdGVyaWFs\n-----END RSA PRIVATE KEY-----"
	// The configs are refused before they listen; their site is a
	// reserved port all the same.
	site := harness.ReservePort(t)
	cfg := fmt.Sprintf("{\n%s\tsentry_silo {\n\t\tstorage %s\n\t\tregion us http://127.0.0.1:1\n\t}\n}\nhttp://%s {\n\tsentry_cred_proxy {\n\t\tgithub_app_id 1\n\t\tgithub_private_key %q\n\t}\n}\n",
		harness.GlobalOptions(c.Admin), s.storage, site.Addr, bad)
	err := c.TryReload(cfg)
	if err == nil || !strings.Contains(err.Error(), "github_private_key: not an RSA private key") {
		t.Fatalf("reload with a bad key: %v", err)
	}
	if strings.Contains(err.Error(), "Tm90QUtleVNlY3JldE1hdGVyaWFs") || strings.Contains(c.Logs(), "Tm90QUtleVNlY3JldE1hdGVyaWFs") {
		t.Fatal("the key was printed")
	}
	for _, bad := range []string{"sentry_cred_proxy {\n\t\tbogus 1\n\t}", "sentry_cred_proxy {\n\t\toauth github a b\n\t}"} {
		cfg := fmt.Sprintf("{\n%s\tsentry_silo {\n\t\tstorage %s\n\t\tregion us http://127.0.0.1:1\n\t}\n}\nhttp://%s {\n\t%s\n}\n", harness.GlobalOptions(c.Admin), s.storage, site.Addr, bad)
		if err := c.TryReload(cfg); err == nil {
			t.Fatalf("accepted %q", bad)
		}
	}
}

// assertNoSecretsLogged fails when a token, a secret or a signature
// reached a log.
func assertNoSecretsLogged(t *testing.T, logs string) {
	t.Helper()
	for _, secret := range []string{credSubnetSecret, credMSTeamsSecret, credGitLabSecret, credDiscordToken, credSlackToken,
		credExpiredGitHub, credGitLabRefresh, credGitLabRevoked, "ghs_minted_", "glat_minted_", "glrt_minted_", "teams_minted_", "v0=", "BEGIN RSA"} {
		if strings.Contains(logs, secret) {
			t.Errorf("a log line holds %q:\n%s", secret, grepLines(logs, secret))
		}
	}
}

func metricsOf(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The README's production topology: our tables in one database, Sentry's
// control tables in another (directory_dsn). Tokens are read, locked and
// written back in the control database, where Sentry's own code reads
// them; the storage database gets no directory tables, not even empty
// ones, and a stale copy there is never used.
func TestCredProxyUsesTheControlDatabase(t *testing.T) {
	cluster := pgtest.NewCluster(t, pgtest.Options{})
	s := newCredSetup(t, credOptions{dsn: cluster.DSN(t), control: cluster.DSN(t), instances: 2})
	waitForTables(t, s.storageDB, 30*time.Second, s.instances[0].Logs, "silo_webhook_payload")
	var tables []string
	rows, err := s.storageDB.Query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'sentry_%' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		_ = rows.Scan(&name)
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) != 0 {
		t.Errorf("migrate created directory tables in the storage database: %v", tables)
	}

	tp := s.tp.URL()
	concurrentCalls(t, s, 20, oiGitHub, func(i int) int { return i % 2 })
	if n := s.tp.githubMint.Load(); n != 1 {
		t.Fatalf("%d GitHub refreshes across both instances, want 1", n)
	}
	md := s.metadataOf(t, 20)
	if md["access_token"] != "ghs_minted_1" || md["sender"] == nil {
		t.Fatalf("control database metadata after the refresh: %v", md)
	}
	var kind string
	if err := s.db.QueryRow(`SELECT jsonb_typeof(metadata) FROM sentry_integration WHERE id = 20`).Scan(&kind); err != nil || kind != "object" {
		t.Fatalf("metadata written back as %q (%v), want a jsonb object", kind, err)
	}
	// A refresh_token identity: refreshed once, written to the control
	// database's sentry_identity.data.
	resp, got := s.call(t, 1, http.MethodGet, tp+"/api/v4/projects", tp+"/api/v4", oiGitLab, "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(got), "glat_minted_1") {
		t.Fatalf("GitLab call: %d %s", resp.StatusCode, got)
	}
	if d := s.identityOf(t, 300); d["access_token"] != "glat_minted_1" {
		t.Fatalf("control database identity after the refresh: %v", d)
	}
	assertNoSecretsLogged(t, s.logs())
}

// A directory_dsn whose database lacks one of Sentry's tables: the app
// says which table is missing and where, never with the password, and
// does not create it.
func TestDirectoryTableMissingIsNamed(t *testing.T) {
	cluster := pgtest.NewCluster(t, pgtest.Options{})
	control := cluster.DSN(t)
	createSentryControlTables(t, control, "sentry_identity")
	u, err := url.Parse(control)
	if err != nil {
		t.Fatal(err)
	}
	const password = "pw-never-logged-4711"
	u.User = url.UserPassword("postgres", password) // trust auth ignores it
	// Nobody listens on region.
	admin, region := harness.ReservePort(t), harness.ReservePort(t)
	c := harness.Start(t, admin, fmt.Sprintf(`{
%s	sentry_silo {
		storage postgres %s
		directory_dsn %s
		region us %s
	}
}
`, harness.GlobalOptions(admin), cluster.DSN(t), u.String(), region.URL()))
	host := fmt.Sprintf("127.0.0.1:%d", cluster.Port())
	waitFor(t, "an error naming sentry_identity and "+host, 30*time.Second, func() bool {
		for _, line := range strings.Split(c.Logs(), "\n") {
			if strings.Contains(line, "sentry_identity") && strings.Contains(line, host) && strings.Contains(line, `"error"`) {
				return true
			}
		}
		return false
	})
	if strings.Contains(c.Logs(), password) {
		t.Fatalf("the DSN's password is in the log:\n%s", grepLines(c.Logs(), password))
	}
	db, err := sql.Open("pgx", control)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var reg *string
	if err := db.QueryRow(`SELECT to_regclass('sentry_identity')::text`).Scan(&reg); err != nil || reg != nil {
		t.Fatalf("sentry_identity in the control database: %v %v; caddy-silo must not create Sentry's tables", reg, err)
	}
}
