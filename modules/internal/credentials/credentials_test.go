package credentials

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// tokenServer is a fake token endpoint that counts its calls.
type tokenServer struct {
	*httptest.Server
	calls atomic.Int64
	delay time.Duration
	fail  atomic.Int64 // status to answer with, 0 for success
	last  atomic.Value // *http.Request with form parsed
}

func newTokenServer(t *testing.T, h func(w http.ResponseWriter, r *http.Request, n int64)) *tokenServer {
	ts := &tokenServer{}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := ts.calls.Add(1)
		_ = r.ParseForm()
		ts.last.Store(r)
		time.Sleep(ts.delay)
		if code := ts.fail.Load(); code != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(int(code))
			io.WriteString(w, `{"error":"invalid_grant","error_description":"secret-refresh-token is bad"}`)
			return
		}
		h(w, r, n)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func githubTokenServer(t *testing.T, key func() *jwt.Token) *tokenServer {
	return newTokenServer(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.Method != http.MethodPost || r.URL.Path != "/app/installations/555/access_tokens" {
			http.Error(w, "wrong endpoint "+r.Method+" "+r.URL.Path, 404)
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"token":"ghs_new%d","expires_at":"%s"}`, n, now.Add(time.Hour).Format(time.RFC3339))
	})
}

func newManager(st Store, cfg Config) *Manager {
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return now }
	}
	return New(cfg, func() Store { return st })
}

func githubTarget(base string, md string) Target {
	return Target{
		Integration:    directory.Integration{ID: 7, Provider: GitHub, ExternalID: "555", Metadata: json.RawMessage(md)},
		OrgIntegration: directory.OrganizationIntegration{ID: 10, IntegrationID: 7},
		BaseURL:        base,
	}
}

func outbound(t *testing.T, rawURL string) *http.Request {
	r, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestGitHubExpiredTokenIsRefreshedAndPersisted(t *testing.T) {
	key := rsaKey(t)
	var seenJWT atomic.Value
	ts := newTokenServer(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		seenJWT.Store(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		if r.URL.Path != "/app/installations/555/access_tokens" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"token":"ghs_new%d","expires_at":"%s"}`, n, now.Add(time.Hour).Format(time.RFC3339))
	})
	st := newMemStore()
	md := `{"access_token":"ghs_old","expires_at":"2026-11-22T11:00:00","sender":{"id":1},"domain_name":"github.com/acme"}`
	st.metadata[7] = json.RawMessage(md)
	m := newManager(st, Config{GitHubAppID: "4242", GitHubPrivateKey: key, HTTPClient: ts.Client()})

	req := outbound(t, ts.URL+"/repos/o/r/commits?sha=abc")
	g, err := m.Authorize(context.Background(), githubTarget(ts.URL, md), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Get("Authorization"); got != "Bearer ghs_new1" {
		t.Fatalf("Authorization = %q", got)
	}
	if got := req.Header.Get("Accept"); got != "application/vnd.github+json" {
		t.Fatalf("Accept = %q", got)
	}
	if !g.refreshable {
		t.Fatal("installation token grant not refreshable")
	}

	// The App JWT: RS256, iss the app id, iat a minute back, exp <= 10 min.
	tok, err := jwt.Parse(seenJWT.Load().(string), func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		t.Fatalf("app jwt: %v", err)
	}
	claims := tok.Claims.(jwt.MapClaims)
	iat, _ := claims.GetIssuedAt()
	exp, _ := claims.GetExpirationTime()
	if iss, _ := claims.GetIssuer(); iss != "4242" {
		t.Fatalf("iss = %q", iss)
	}
	if !iat.Time.Equal(now.Add(-60*time.Second)) || exp.Time.Sub(iat.Time) > 10*time.Minute || !exp.Time.After(now) {
		t.Fatalf("iat %v exp %v", iat, exp)
	}

	// Persisted, merged: other keys kept.
	doc := st.get(st.metadata, 7)
	if doc.str("access_token") != "ghs_new1" || doc.str("expires_at") != "2026-11-22T13:00:00" || doc.str("domain_name") != "github.com/acme" || string(doc["sender"]) != `{"id":1}` {
		t.Fatalf("metadata = %v", doc)
	}

	// A second request within validity reuses it.
	fresh, _ := json.Marshal(doc)
	req2 := outbound(t, ts.URL+"/repos/o/r")
	if _, err := m.Authorize(context.Background(), githubTarget(ts.URL, string(fresh)), req2); err != nil {
		t.Fatal(err)
	}
	if req2.Header.Get("Authorization") != "Bearer ghs_new1" || ts.calls.Load() != 1 {
		t.Fatalf("second request: %q after %d refreshes", req2.Header.Get("Authorization"), ts.calls.Load())
	}
}

// GitHub Enterprise signs with the installation's own app id and key and
// names the installation by metadata.installation_id.
func TestGitHubEnterpriseInstallation(t *testing.T) {
	gheKey := rsaKey(t)
	var iss atomic.Value
	ts := newTokenServer(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.URL.Path != "/api/v3/app/installations/77/access_tokens" {
			http.NotFound(w, r)
			return
		}
		tok, err := jwt.Parse(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), func(*jwt.Token) (any, error) { return &gheKey.PublicKey, nil },
			jwt.WithTimeFunc(func() time.Time { return now }))
		if err != nil {
			w.WriteHeader(401)
			return
		}
		i, _ := tok.Claims.GetIssuer()
		iss.Store(i)
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"token":"ghe_%d","expires_at":"%s"}`, n, now.Add(time.Hour).Format(time.RFC3339))
	})
	der := x509.MarshalPKCS1PrivateKey(gheKey)
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}))
	mdBytes, _ := json.Marshal(map[string]any{"installation_id": "77", "installation": map[string]any{"id": 9001, "private_key": keyPEM, "url": "ghe.acme"}})
	st := newMemStore()
	st.metadata[8] = mdBytes
	m := newManager(st, Config{HTTPClient: ts.Client()}) // no configured app: the installation's own
	tgt := Target{Integration: directory.Integration{ID: 8, Provider: GitHubEnterprise, ExternalID: "ghe.acme:77", Metadata: mdBytes}, BaseURL: ts.URL + "/api/v3"}
	req := outbound(t, ts.URL+"/api/v3/repos/o/r")
	if _, err := m.Authorize(context.Background(), tgt, req); err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("Authorization") != "Bearer ghe_1" || iss.Load() != "9001" {
		t.Fatalf("Authorization %q, iss %v", req.Header.Get("Authorization"), iss.Load())
	}
}

func TestGitHubAppPathsUseTheJWT(t *testing.T) {
	st := newMemStore()
	st.metadata[7] = json.RawMessage(`{}`)
	m := newManager(st, Config{GitHubAppID: "4242", GitHubPrivateKey: rsaKey(t)})
	for _, path := range []string{"/app/installations/555", "/app/installations/555/access_tokens", "/installation/access_tokens"} {
		req := outbound(t, "https://api.github.com"+path)
		g, err := m.Authorize(context.Background(), githubTarget("https://api.github.com", `{}`), req)
		if err != nil {
			t.Fatal(err)
		}
		auth := strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
		if strings.Count(auth, ".") != 2 || g.refreshable {
			t.Fatalf("%s: Authorization %q refreshable %v", path, auth, g.refreshable)
		}
	}
}

func TestGitHubAccept(t *testing.T) {
	st := newMemStore()
	md := `{"access_token":"ghs_ok","expires_at":"2026-11-22T13:00:00"}`
	st.metadata[7] = json.RawMessage(md)
	m := newManager(st, Config{})
	for ct, want := range map[string]string{
		"":                               "application/vnd.github+json",
		"application/json":               "application/vnd.github+json",
		"application/raw; charset=utf-8": "application/vnd.github.raw",
	} {
		req := outbound(t, "https://api.github.com/repos/o/r")
		req.Header.Set("Accept", "text/plain")
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if _, err := m.Authorize(context.Background(), githubTarget("https://api.github.com", md), req); err != nil {
			t.Fatal(err)
		}
		if got := req.Header.Get("Accept"); got != want {
			t.Errorf("Content-Type %q: Accept %q, want %q", ct, got, want)
		}
	}
}

// Fifty calls at expiry in each of two "instances" (Managers sharing one
// store) make exactly one refresh.
func TestOneRefreshPerExpiry(t *testing.T) {
	ts := githubTokenServer(t, nil)
	ts.delay = 50 * time.Millisecond
	st := newMemStore()
	md := `{"access_token":"ghs_old","expires_at":"2026-11-22T11:00:00"}`
	st.metadata[7] = json.RawMessage(md)
	var outcomes sync.Map
	observe := func(p, o string) {
		v, _ := outcomes.LoadOrStore(o, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	cfg := Config{GitHubAppID: "1", GitHubPrivateKey: rsaKey(t), HTTPClient: ts.Client(), Observe: observe}
	instances := []*Manager{newManager(st, cfg), newManager(st, cfg)}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(m *Manager) {
			defer wg.Done()
			req := outbound(t, ts.URL+"/repos/o/r")
			if _, err := m.Authorize(context.Background(), githubTarget(ts.URL, md), req); err != nil {
				errs <- err
				return
			}
			if got := req.Header.Get("Authorization"); got != "Bearer ghs_new1" {
				errs <- fmt.Errorf("Authorization %q", got)
			}
		}(instances[i%2])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := ts.calls.Load(); n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
	ok, _ := outcomes.Load("ok")
	reused, _ := outcomes.Load("reused")
	if ok.(*atomic.Int64).Load() != 1 || reused.(*atomic.Int64).Load() < 1 {
		t.Fatalf("outcomes ok %v reused %v", ok, reused)
	}
}

func TestReauthorizeAfter401(t *testing.T) {
	ts := githubTokenServer(t, nil)
	st := newMemStore()
	md := `{"access_token":"ghs_revoked","expires_at":"2026-11-22T13:00:00"}`
	st.metadata[7] = json.RawMessage(md)
	cfg := Config{GitHubAppID: "1", GitHubPrivateKey: rsaKey(t), HTTPClient: ts.Client()}
	a, b := newManager(st, cfg), newManager(st, cfg)

	req := outbound(t, ts.URL+"/repos/o/r")
	g, err := a.Authorize(context.Background(), githubTarget(ts.URL, md), req)
	if err != nil || req.Header.Get("Authorization") != "Bearer ghs_revoked" {
		t.Fatalf("%v %q", err, req.Header.Get("Authorization"))
	}
	// Both instances got a 401 with the same token: one refresh between them.
	for _, m := range []*Manager{a, b} {
		g2, ok, err := m.Reauthorize(context.Background(), githubTarget(ts.URL, md), req, g)
		if err != nil || !ok || !g2.refreshable {
			t.Fatalf("Reauthorize: %v %v", ok, err)
		}
		if got := req.Header.Get("Authorization"); got != "Bearer ghs_new1" {
			t.Fatalf("after 401: %q", got)
		}
	}
	if n := ts.calls.Load(); n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
	// A static credential cannot be refreshed: the 401 stands.
	if _, ok, err := a.Reauthorize(context.Background(), githubTarget(ts.URL, md), req, Grant{}); ok || err != nil {
		t.Fatalf("static grant reauthorized: %v %v", ok, err)
	}
}

func TestMSTeamsClientCredentials(t *testing.T) {
	ts := newTokenServer(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"bot%d","token_type":"Bearer","expires_in":3600}`, n)
	})
	st := newMemStore()
	md := `{"service_url":"https://smba.trafficmanager.net/amer/","access_token":"old","expires_at":1}`
	st.metadata[9] = json.RawMessage(md)
	m := newManager(st, Config{MSTeams: OAuthClient{ClientID: "app-id", ClientSecret: "app-secret", TokenURL: ts.URL + "/token"}, HTTPClient: ts.Client()})
	tgt := Target{Integration: directory.Integration{ID: 9, Provider: MSTeams, Metadata: json.RawMessage(md)}, BaseURL: "https://smba.trafficmanager.net/amer"}
	req := outbound(t, "https://smba.trafficmanager.net/amer/v3/conversations")
	if _, err := m.Authorize(context.Background(), tgt, req); err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("Authorization") != "Bearer bot1" {
		t.Fatalf("Authorization %q", req.Header.Get("Authorization"))
	}
	r := ts.last.Load().(*http.Request)
	want := url.Values{"client_id": {"app-id"}, "client_secret": {"app-secret"}, "grant_type": {"client_credentials"}, "scope": {"https://api.botframework.com/.default"}}
	for k, v := range want {
		if r.PostForm.Get(k) != v[0] {
			t.Errorf("form %s = %q, want %q", k, r.PostForm.Get(k), v[0])
		}
	}
	doc := st.get(st.metadata, 9)
	exp, _ := doc.expiry("expires_at")
	// expires_at = now + expires_in - 300 (x/oauth2 counts from its own clock).
	if d := exp.Sub(time.Now().Add(3600*time.Second - 300*time.Second)); d < -5*time.Second || d > 5*time.Second {
		t.Fatalf("expires_at %v", exp)
	}
	if doc.str("service_url") != "https://smba.trafficmanager.net/amer/" {
		t.Fatal("service_url lost")
	}
}

func gitlabTarget(authID *int64, md string) Target {
	return Target{
		Integration:    directory.Integration{ID: 3, Provider: GitLab, Metadata: json.RawMessage(md)},
		OrgIntegration: directory.OrganizationIntegration{ID: 11, IntegrationID: 3, DefaultAuthID: authID},
	}
}

func TestGitLabRefreshTokenGrant(t *testing.T) {
	ts := newTokenServer(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"glat%d","refresh_token":"glrt%d","token_type":"Bearer","expires_in":7200}`, n, n)
	})
	st := newMemStore()
	st.identities[21] = json.RawMessage(`{"access_token":"old","refresh_token":"glrt0","expires":1700000000,"scopes":["api"]}`)
	id := int64(21)
	m := newManager(st, Config{OAuth: map[string]OAuthClient{GitLab: {ClientID: "cid", ClientSecret: "csecret", TokenURL: ts.URL + "/oauth/token"}}, HTTPClient: ts.Client()})
	req := outbound(t, "https://gitlab.com/api/v4/projects")
	if _, err := m.Authorize(context.Background(), gitlabTarget(&id, `{}`), req); err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("Authorization") != "Bearer glat1" {
		t.Fatalf("Authorization %q", req.Header.Get("Authorization"))
	}
	r := ts.last.Load().(*http.Request)
	if r.PostForm.Get("grant_type") != "refresh_token" || r.PostForm.Get("refresh_token") != "glrt0" || r.PostForm.Get("client_id") != "cid" {
		t.Fatalf("form %v", r.PostForm)
	}
	doc := st.get(st.identities, 21)
	if doc.str("access_token") != "glat1" || doc.str("refresh_token") != "glrt1" || string(doc["scopes"]) != `["api"]` {
		t.Fatalf("identity %v", doc)
	}
	if exp, ok := doc.expiry("expires"); !ok || exp.Before(time.Now().Add(time.Hour)) {
		t.Fatalf("expires %v", exp)
	}
	// Fresh now: no second refresh.
	req2 := outbound(t, "https://gitlab.com/api/v4/projects")
	if _, err := m.Authorize(context.Background(), gitlabTarget(&id, `{}`), req2); err != nil || ts.calls.Load() != 1 {
		t.Fatalf("%v, %d refreshes", err, ts.calls.Load())
	}
}

func TestCredentialErrors(t *testing.T) {
	ts := newTokenServer(t, func(w http.ResponseWriter, r *http.Request, n int64) {})
	st := newMemStore()
	st.identities[21] = json.RawMessage(`{"access_token":"old","refresh_token":"secret-refresh-token","expires":1700000000}`)
	st.identities[22] = json.RawMessage(`{"access_token":"old","expires":1700000000}`)
	st.metadata[7] = json.RawMessage(`{}`)
	id21, id22, id99 := int64(21), int64(22), int64(99)
	oauth := map[string]OAuthClient{GitLab: {ClientID: "cid", ClientSecret: "very-secret-client", TokenURL: ts.URL}}
	m := newManager(st, Config{OAuth: oauth, HTTPClient: ts.Client(), DiscordBotToken: ""})
	bare := newManager(st, Config{HTTPClient: ts.Client()})

	cases := []struct {
		name    string
		m       *Manager
		t       Target
		fail    int64
		invalid bool
	}{
		{"no default identity", m, gitlabTarget(nil, `{}`), 0, true},
		{"identity missing", m, gitlabTarget(&id99, `{}`), 0, true},
		{"no refresh token", m, gitlabTarget(&id22, `{}`), 0, true},
		{"oauth client not configured", bare, gitlabTarget(&id21, `{}`), 0, true},
		{"grant refused", m, gitlabTarget(&id21, `{}`), 400, true},
		{"token endpoint down", m, gitlabTarget(&id21, `{}`), 503, false},
		{"github app not configured", bare, githubTarget(ts.URL, `{}`), 0, true},
		{"slack without token", m, Target{Integration: directory.Integration{Provider: Slack, Metadata: json.RawMessage(`{}`)}}, 0, true},
		{"discord without bot token", m, Target{Integration: directory.Integration{Provider: Discord}}, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts.fail.Store(c.fail)
			_, err := c.m.Authorize(context.Background(), c.t, outbound(t, "https://example.com/x"))
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrInvalid) != c.invalid {
				t.Fatalf("errors.Is(ErrInvalid) = %v: %v", !c.invalid, err)
			}
			for _, secret := range []string{"secret-refresh-token", "very-secret-client"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error leaks a secret: %v", err)
				}
			}
		})
	}
	if _, err := m.Authorize(context.Background(), Target{Integration: directory.Integration{Provider: "jira"}}, outbound(t, "https://x")); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("jira: %v", err)
	}
}

func TestStaticCredentials(t *testing.T) {
	st := newMemStore()
	m := newManager(st, Config{DiscordBotToken: "disco"})
	cases := []struct {
		provider, md, want string
	}{
		{Slack, `{"access_token":"xoxb-1","user_access_token":"xoxp-1"}`, "Bearer xoxp-1"},
		{Slack, `{"access_token":"xoxb-1"}`, "Bearer xoxb-1"},
		{Discord, `{}`, "Bot disco"},
	}
	for i, c := range cases {
		id := int64(100 + i)
		st.metadata[id] = json.RawMessage(c.md)
		req := outbound(t, "https://slack.com/api/chat.postMessage")
		g, err := m.Authorize(context.Background(), Target{Integration: directory.Integration{ID: id, Provider: c.provider, Metadata: json.RawMessage(c.md)}}, req)
		if err != nil || req.Header.Get("Authorization") != c.want || g.refreshable {
			t.Errorf("%s %s: %v %q", c.provider, c.md, err, req.Header.Get("Authorization"))
		}
	}
}

// A token read from the store is used from memory for CacheFor at most,
// never past its expiry margin, and a 401 evicts it.
func TestTokenCache(t *testing.T) {
	clock := now
	st := newMemStore()
	st.metadata[7] = json.RawMessage(`{"access_token":"ghs_a","expires_at":"2026-11-22T13:00:00"}`)
	ts := githubTokenServer(t, nil)
	m := New(Config{GitHubAppID: "1", GitHubPrivateKey: rsaKey(t), HTTPClient: ts.Client(), Now: func() time.Time { return clock }}, func() Store { return st })
	auth := func() string {
		req := outbound(t, ts.URL+"/repos/o/r")
		if _, err := m.Authorize(context.Background(), githubTarget(ts.URL, `{}`), req); err != nil {
			t.Fatal(err)
		}
		return req.Header.Get("Authorization")
	}
	if got := auth(); got != "Bearer ghs_a" {
		t.Fatal(got)
	}
	st.metadata[7] = json.RawMessage(`{"access_token":"ghs_b","expires_at":"2026-11-22T13:00:00"}`)
	if got := auth(); got != "Bearer ghs_a" {
		t.Fatalf("within CacheFor: %s", got)
	}
	clock = clock.Add(DefaultCacheFor)
	if got := auth(); got != "Bearer ghs_b" {
		t.Fatalf("after CacheFor: %s", got)
	}
	// Close to expiry the cached token is not used: the row is read again,
	// found expiring and refreshed.
	clock = time.Date(2026, 11, 22, 12, 59, 30, 0, time.UTC)
	if got := auth(); got != "Bearer ghs_new1" || ts.calls.Load() != 1 {
		t.Fatalf("at expiry: %s after %d refreshes", got, ts.calls.Load())
	}
}

func TestOwnsHost(t *testing.T) {
	cases := []struct {
		provider, md, base string
		want               bool
	}{
		{GitHub, `{}`, "https://api.github.com", true},
		{GitHub, `{}`, "https://API.GitHub.com.", true},
		{GitHub, `{}`, "https://api.github.com:8443", false},
		{GitHub, `{}`, "http://api.github.com", false},
		{GitHub, `{}`, "https://evil.com", false},
		{GitHub, `{}`, "https://slack.com/api", false},
		{GitHubEnterprise, `{"installation":{"url":"ghe.acme.internal"},"domain_name":"ghe.acme.internal/acme"}`, "https://ghe.acme.internal/api/v3", true},
		{GitHubEnterprise, `{"installation":{"url":"ghe.acme.internal"}}`, "https://api.github.com", false},
		{GitHubEnterprise, `{"installation":{"url":"ghe.acme.internal"}}`, "http://ghe.acme.internal/api/v3", false},
		{GitLab, `{"base_url":"https://gitlab.acme.io:8443"}`, "https://gitlab.acme.io:8443/api/v4", true},
		{GitLab, `{"base_url":"https://gitlab.acme.io:8443"}`, "https://gitlab.acme.io/api/v4", false},
		{GitLab, `{}`, "https://gitlab.com/api/v4", true},
		{Slack, `{}`, "https://slack.com/api", true},
		{Slack, `{}`, "https://hooks.slack.com.evil.com", false},
		{Discord, `{}`, "https://discord.com/api/v10", true},
		{MSTeams, `{"service_url":"https://smba.infra.gov.teams.microsoft.us/"}`, "https://smba.infra.gov.teams.microsoft.us", true},
		{MSTeams, `{}`, "https://smba.trafficmanager.net/amer", true},
		{VSTS, `{"domain_name":"https://acme.visualstudio.com/"}`, "https://acme.visualstudio.com", true},
		{VSTS, `{}`, "https://dev.azure.com/acme", true},
		{VSTS, `{}`, "https://vssps.dev.azure.com", true},
		{VSTS, `{}`, "https://evilvisualstudio.com", false},
		{"jira", `{}`, "https://acme.atlassian.net", false},
	}
	for _, c := range cases {
		u, _ := url.Parse(c.base)
		if got := OwnsHost(c.provider, json.RawMessage(c.md), u); got != c.want {
			t.Errorf("OwnsHost(%s, %s, %s) = %v", c.provider, c.md, c.base, got)
		}
	}
}

func TestExpiryFormats(t *testing.T) {
	cases := map[string]time.Time{
		`{"e":1700000000}`:                  time.Unix(1700000000, 0).UTC(),
		`{"e":"1700000000"}`:                time.Unix(1700000000, 0).UTC(),
		`{"e":"2026-11-22T11:00:00"}`:       time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC),
		`{"e":"2026-11-22T11:00:00.5"}`:     time.Date(2026, 11, 22, 11, 0, 0, 5e8, time.UTC),
		`{"e":"2026-11-22T11:00:00Z"}`:      time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC),
		`{"e":"2026-11-22T12:00:00+01:00"}`: time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC),
	}
	for in, want := range cases {
		got, ok := parseDocument(json.RawMessage(in)).expiry("e")
		if !ok || !got.Equal(want) {
			t.Errorf("%s: %v %v", in, got, ok)
		}
	}
	for _, in := range []string{`{}`, `{"e":null}`, `{"e":"soon"}`, `{"e":-1}`, `not json`} {
		if _, ok := parseDocument(json.RawMessage(in)).expiry("e"); ok {
			t.Errorf("%s parsed", in)
		}
	}
}
