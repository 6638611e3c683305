package credproxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sentrysilo/caddy-silo/modules/internal/credentials"
	"github.com/sentrysilo/caddy-silo/modules/internal/rejection"
	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

func TestBuildTarget(t *testing.T) {
	cases := []struct {
		base, path, want string
	}{
		{"https://api.github.com", "repos/o/r/commits?sha=abc", "https://api.github.com/repos/o/r/commits?sha=abc"},
		{"https://slack.com/api", "chat.postMessage", "https://slack.com/api/chat.postMessage"},
		{"https://slack.com/api/", "/chat.postMessage", "https://slack.com/api/chat.postMessage"},
		{"https://slack.com/api", "", "https://slack.com/api/"},
		{"https://ghe.acme/api/v3", "search/issues?q=repo:o/r+is:open", "https://ghe.acme/api/v3/search/issues?q=repo:o/r+is:open"},
		{"https://dev.azure.com/acme", "_apis/wit/workitems/%2412?api-version=7.0", "https://dev.azure.com/acme/_apis/wit/workitems/%2412?api-version=7.0"},
		{"https://gitlab.com/api/v4", "projects/grp%2Fsub/repository/files/a%2Fb.go/raw?ref=main", "https://gitlab.com/api/v4/projects/grp%2Fsub/repository/files/a%2Fb.go/raw?ref=main"},
		{"https://api.github.com", "a/../b", "https://api.github.com/a/../b"},
		{"https://api.github.com", "repos/o/r/contents/a:b", "https://api.github.com/repos/o/r/contents/a:b"},
		{"http://127.0.0.1:8080/api", "x?", "http://127.0.0.1:8080/api/x?"},
	}
	for _, c := range cases {
		tgt, err := buildTarget(c.base, c.path)
		if err != nil {
			t.Errorf("buildTarget(%q, %q): %v", c.base, c.path, err)
			continue
		}
		if got := tgt.url.String(); got != c.want {
			t.Errorf("buildTarget(%q, %q) = %s, want %s", c.base, c.path, got, c.want)
		}
	}
	bad := []struct{ base, path string }{
		{"https://api.github.com", "https://evil.com/x"},
		{"https://api.github.com", "javascript:alert(1)"},
		{"https://api.github.com", "//evil.com/x"},
		{"https://api.github.com", "///evil.com/x"},
		{"https://api.github.com", "..//evil.com"},
		{"https://api.github.com/api", "../x"},
		{"https://api.github.com", "a/../../x"},
		{"https://api.github.com", "%2e%2e/x"},
		{"https://api.github.com", ".%2E/x"},
		{"https://api.github.com", "a%2F..%2F..%2Fx"},
		{"https://api.github.com", "a%5C..%5C..%5Cx"},
		{"https://api.github.com", "a\\b"},
		{"https://api.github.com", "a#frag"},
		{"https://api.github.com", "a\r\nHost: evil"},
		{"api.github.com", "x"},
		{"//api.github.com", "x"},
		{"file:///etc/passwd", "x"},
		{"https://user@api.github.com", "x"},
		{"https://api.github.com?x=1", "x"},
		{"https://", "x"},
		{"https://:443", "x"},
	}
	for _, c := range bad {
		if tgt, err := buildTarget(c.base, c.path); err == nil {
			t.Errorf("buildTarget(%q, %q) = %s, want an error", c.base, c.path, tgt.url)
		}
	}
}

// FuzzProxyHeaders drives the whole validation path with arbitrary
// subnet headers: it must never panic, never call out for a rejected
// request, and every accepted target must stay on the base's host and
// under its path.
func FuzzProxyHeaders(f *testing.F) {
	f.Add("https://slack.com/api", "chat.postMessage?x=1", "10", "3,30", true)
	f.Add("https://slack.com/api/", "/a/../b", "10", "abc", true)
	f.Add("https://slack.com/api", "//evil.com", "None", "", false)
	f.Add("http://[::1]:80/x", "%2e%2e/y", "0010", "1e9", true)
	f.Add("https://slack.com", "a%2F..%2F..%2Fb", "18446744073709551616", "-1", true)
	f.Fuzz(func(t *testing.T, base, path, oi, timeout string, signed bool) {
		if tgt, err := buildTarget(base, path); err == nil {
			b := tgt.base
			if tgt.url.Host != b.Host || tgt.url.Scheme != b.Scheme || !strings.HasPrefix(tgt.url.EscapedPath(), b.EscapedPath()+"/") {
				t.Fatalf("target %s escapes base %s", tgt.url, b)
			}
			if climbs(strings.TrimPrefix(tgt.url.EscapedPath(), b.EscapedPath())) {
				t.Fatalf("target %s climbs above %s", tgt.url, b)
			}
		}
		fx := newFuzzFixture(t)
		r := httptest.NewRequest(http.MethodPost, subnet.ProxyPath, strings.NewReader("{}"))
		for k, v := range map[string]string{subnet.HeaderBaseURL: base, subnet.HeaderPath: path, subnet.HeaderOrganizationIntegration: oi, subnet.HeaderTimeout: timeout} {
			if validHeaderValue(v) {
				r.Header.Set(k, v)
			}
		}
		if signed {
			r.Header.Set(subnet.HeaderSignature, subnet.Sign(testSecret, r.Header.Get(subnet.HeaderBaseURL), r.Header.Get(subnet.HeaderPath), r.Header.Get(subnet.HeaderOrganizationIntegration), []byte("{}")))
		}
		w := httptest.NewRecorder()
		fx.proxy.serve(w, r)
		if w.Header().Get(subnet.HeaderInternalProxyFailure) == "" {
			t.Fatal("no failure header")
		}
		if !signed && w.Code != http.StatusBadRequest {
			t.Fatalf("unsigned request answered %d", w.Code)
		}
		if w.Code == http.StatusBadRequest && fx.calls.Load() != 0 {
			t.Fatal("rejected request reached the network")
		}
	})
}

type fuzzFixture struct {
	proxy *proxy
	calls *countingTransport
}

// countingTransport answers every call itself: the fuzzer never touches
// the network.
type countingTransport struct{ n int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n++
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

func (c *countingTransport) Load() int64 { return c.n }

func newFuzzFixture(t *testing.T) fuzzFixture {
	st := newMemLookups()
	st.add(10, slackIntegration(5))
	ct := &countingTransport{}
	client := &http.Client{Transport: ct}
	al, _, _ := parseAllowList([]string{"127.0.0.1", "::1"})
	p := &proxy{
		secret:         func() string { return testSecret },
		lookups:        func() Lookups { return st },
		creds:          credentials.New(credentials.Config{HTTPClient: client}, func() credentials.Store { return st }),
		client:         client,
		allow:          al,
		connectTimeout: 1,
		readTimeout:    1 << 40,
		maxBodySize:    1 << 10,
		logger:         zapNop,
		rejections:     rejection.New(zapNop, "integration proxy request rejected", rejectionsTotal),
	}
	return fuzzFixture{proxy: p, calls: ct}
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 && v[i] != '\t' || v[i] == 0x7f {
			return false
		}
	}
	return true
}
