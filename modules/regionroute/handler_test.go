package regionroute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/routes"
)

func TestClassify(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	dialTimeout := &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}
	tests := []struct {
		err    error
		want   outcome
		status int
	}{
		{caddyhttp.Error(502, reverseproxy.NewDialError(errors.New("dial tcp: lookup de.internal: no such host"))), outcomeUnavailable, 503},
		{caddyhttp.Error(502, reverseproxy.NewDialError(refused)), outcomeUnavailable, 503},
		{caddyhttp.Error(502, reverseproxy.NewDialError(dialTimeout)), outcomeTimeout, 504},
		{caddyhttp.Error(504, timeoutErr{}), outcomeTimeout, 504},
		{caddyhttp.Error(502, fmt.Errorf("reading: %w", context.DeadlineExceeded)), outcomeTimeout, 504},
		{caddyhttp.Error(499, context.Canceled), outcomeCanceled, 0},
		{caddyhttp.Error(502, errors.New("net/http: HTTP/1.x transport connection broken: malformed HTTP response")), outcomeError, 502},
	}
	for _, tt := range tests {
		got, apiErr := classify(tt.err)
		status := 0
		if apiErr != nil {
			status = apiErr.status
		}
		if got != tt.want || status != tt.status {
			t.Errorf("classify(%v) = %s %d, want %s %d", tt.err, got, status, tt.want, tt.status)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestGatewayWriter(t *testing.T) {
	rec := httptest.NewRecorder()
	g := getWriter(rec, "http://de.internal/api/0/organizations/beta/")
	h := g.Header()
	h.Set("X-Sentry-Subnet-Signature", "v0=abc")
	h.Set("x-sentry-subnet-base-url", "https://x") // non-canonical key
	h.Set("X-Sentry-Proxy-URL", "http://spoofed/")
	h.Set("Test", "header")
	g.Write([]byte("body"))
	if g.status != http.StatusOK {
		t.Fatalf("status %d after an implicit 200", g.status)
	}
	res := rec.Result()
	for k := range res.Header {
		if len(k) >= 16 && http.CanonicalHeaderKey(k[:16]) == "X-Sentry-Subnet-" {
			t.Errorf("%s kept", k)
		}
	}
	if got := res.Header.Values("X-Sentry-Proxy-URL"); len(got) != 1 || got[0] != "http://de.internal/api/0/organizations/beta/" {
		t.Errorf("X-Sentry-Proxy-URL %q", got)
	}
	if res.Header.Get("Test") != "header" {
		t.Error("other headers lost")
	}
	putWriter(g)
}

func TestGatewayWriterInformational(t *testing.T) {
	w := &codeWriter{h: http.Header{}}
	g := getWriter(w, "http://us.internal/x")
	g.WriteHeader(http.StatusEarlyHints)
	g.WriteHeader(http.StatusOK)
	g.WriteHeader(http.StatusTeapot) // superfluous, passed on as is
	if g.status != http.StatusOK || fmt.Sprint(w.codes) != "[103 200 418]" {
		t.Fatalf("status %d, codes %v", g.status, w.codes)
	}
	putWriter(g)
}

// TestGatewayWriterStreamsKnownLengths: a write that leaves part of the
// announced body to come is flushed; the write that completes it (a fast
// answer's only write) and answers of unknown length (reverse_proxy
// flushes those itself) are not.
func TestGatewayWriterStreamsKnownLengths(t *testing.T) {
	tests := []struct {
		name    string
		length  string
		writes  []string
		flushes int
	}{
		{name: "whole body in one write", length: "10", writes: []string{"0123456789"}, flushes: 0},
		{name: "trickled body", length: "10", writes: []string{"0123", "456", "789"}, flushes: 2},
		{name: "no length", writes: []string{"0123", "456"}, flushes: 0},
		{name: "empty body", length: "0", writes: nil, flushes: 0},
		{name: "bad length", length: "ten", writes: []string{"0123"}, flushes: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			f := &flushCounter{ResponseRecorder: rec}
			g := getWriter(f, "http://us.internal/x")
			if tt.length != "" {
				g.Header().Set("Content-Length", tt.length)
			}
			g.WriteHeader(http.StatusOK)
			for _, w := range tt.writes {
				if _, err := io.WriteString(g, w); err != nil {
					t.Fatal(err)
				}
			}
			putWriter(g)
			if f.flushes != tt.flushes {
				t.Errorf("%d flushes, want %d", f.flushes, tt.flushes)
			}
		})
	}
}

type flushCounter struct {
	*httptest.ResponseRecorder
	flushes int
}

func (f *flushCounter) Flush() { f.flushes++; f.ResponseRecorder.Flush() }

type codeWriter struct {
	h     http.Header
	codes []int
}

func (c *codeWriter) Header() http.Header         { return c.h }
func (c *codeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (c *codeWriter) WriteHeader(code int)        { c.codes = append(c.codes, code) }

func TestDialAddress(t *testing.T) {
	for in, want := range map[string]string{
		"http://10.0.0.5:8010":     "10.0.0.5:8010",
		"http://us.internal":       "us.internal:80",
		"https://de.internal/":     "de.internal:443",
		"http://[::1]:9000/prefix": "[::1]:9000",
	} {
		u, _ := url.Parse(in)
		if got, err := dialAddress(u); err != nil || got != want {
			t.Errorf("dialAddress(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"ftp://x", "http://"} {
		u, _ := url.Parse(in)
		if _, err := dialAddress(u); err == nil {
			t.Errorf("dialAddress(%s) accepted", in)
		}
	}
}

// fakeProxy stands in for a region's reverse_proxy.
type fakeProxy struct {
	region string
	status int
	err    error
	seen   *http.Request // a copy, as reverse_proxy clones it
	quiet  bool          // record nothing (benchmarks)
}

func (f *fakeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if !f.quiet {
		f.seen = r.Clone(r.Context())
	}
	if f.err != nil {
		return f.err
	}
	w.WriteHeader(f.status)
	return nil
}

// cacheSource answers organization lookups (the directory caches them).
type cacheSource struct {
	directory.Source
	orgs map[string]directory.Organization
}

func (s cacheSource) OrganizationBySlug(_ context.Context, slug string) (directory.Organization, error) {
	if o, ok := s.orgs[slug]; ok {
		return o, nil
	}
	return directory.Organization{}, directory.ErrNotFound
}

func testHandler(t testing.TB, proxies map[string]*fakeProxy) *Handler {
	t.Helper()
	m := newMetrics(nil)
	h := &Handler{
		table:      routes.MustCompile(routes.Table),
		regions:    map[string]*region{},
		defaultReg: "us",
		appHost:    "sentry.io",
		dir: directory.New(cacheSource{orgs: map[string]directory.Organization{
			"acme": {ID: 1, Slug: "acme", Region: "us"},
			"beta": {ID: 2, Slug: "beta", Region: "de"},
			"gone": {ID: 3, Slug: "gone", Region: "zz"},
		}}, directory.Options{}),
		none:      m.series("none"),
		logger:    zap.NewNop(),
		dirErrLog: new(atomic.Int64),
	}
	for name, p := range proxies {
		r := &region{name: name, host: name + ".internal", base: "http://" + name + ".internal", proxy: p, upload: p, m: m.series(name),
			limit: &limiter{max: 2}, breaker: &breaker{max: 1, window: int64(60e9)}}
		h.regions[name] = r
	}
	return h
}

var nextHandler = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	w.WriteHeader(299)
	return nil
})

func serve(h *Handler, method, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, target, nil)
	req.RemoteAddr = "2.2.2.2:1234"
	_ = h.ServeHTTP(rec, req, nextHandler)
	return rec
}

func TestServeHTTP(t *testing.T) {
	us, de := &fakeProxy{region: "us", status: 200}, &fakeProxy{region: "de", status: 200}
	h := testHandler(t, map[string]*fakeProxy{"us": us, "de": de})
	tests := []struct {
		path   string
		status int
		to     *fakeProxy
		body   string
	}{
		{"/api/0/organizations/beta/issues/", 200, de, ""},
		{"/api/0/organizations/acme/issues/", 200, us, ""},
		{"/api/0/organizations/nope/issues/", 404, nil, `{"error":"apigateway","detail":"Not found"}`},
		{"/api/0/organizations/gone/issues/", 404, nil, `{"error":"apigateway","detail":"Not found"}`},
		{"/api/0/organizations/acme/integrations/", 299, nil, ""},
		{"/api/0/users/me/", 299, nil, ""},
		{"/api/0/relays/", 200, us, ""},
		{"/api/embed/error-page/?dsn=https://k@o1.ingest.de.sentry.io/1", 200, de, ""},
		{"/api/embed/error-page/", 400, nil, `{"error":"apigateway","detail":"Invalid request"}`},
		// A repeated dsn: the region renders the page for the last one.
		{"/api/embed/error-page/?dsn=https://k@o1.ingest.us.sentry.io/1&dsn=https://k@o1.ingest.de.sentry.io/1", 200, de, ""},
		{"/api/embed/error-page/?dsn=https://k@o1.ingest.de.sentry.io/1&dsn=", 400, nil, `{"error":"apigateway","detail":"Invalid request"}`},
		{"/api/0/organizations/%ff%fe/issues/", 404, nil, `{"error":"apigateway","detail":"Not found"}`},
		{"/api/0/organizations/acme%00/issues/", 404, nil, `{"error":"apigateway","detail":"Not found"}`},
		{"/js-sdk-loader/%00.js", 299, nil, ""},
		// Dot segments on a proxied route: the region could resolve them
		// to a path we never routed (here, a webhook endpoint).
		{"/api/0/organizations/acme/../../../extensions/github/webhook/", 400, nil, `{"error":"apigateway","detail":"Invalid request"}`},
		{"/api/0/organizations/acme/%2e%2e/%2E%2E/%2e%2e/extensions/github/webhook/", 400, nil, `{"error":"apigateway","detail":"Invalid request"}`},
		{"/api/0/organizations/acme/./issues/", 400, nil, `{"error":"apigateway","detail":"Invalid request"}`},
		{"/api/0/organizations/acme/issues/..", 400, nil, `{"error":"apigateway","detail":"Invalid request"}`},
		{"/api/0/organizations/acme/issues/..x/", 200, us, ""},
	}
	for _, tt := range tests {
		us.seen, de.seen = nil, nil
		rec := serve(h, http.MethodGet, tt.path)
		if rec.Code != tt.status || (tt.body != "" && rec.Body.String() != tt.body) {
			t.Errorf("%s: %d %s", tt.path, rec.Code, rec.Body)
			continue
		}
		for _, p := range []*fakeProxy{us, de} {
			if (p == tt.to) != (p.seen != nil) {
				t.Errorf("%s: region %s called=%v", tt.path, p.region, p.seen != nil)
			}
		}
		if tt.to != nil {
			if tt.to.seen.Host != tt.to.region+".internal" || tt.to.seen.Header.Get("X-Apigateway") != "true" {
				t.Errorf("%s: Host %q X-Apigateway %q", tt.path, tt.to.seen.Host, tt.to.seen.Header.Get("X-Apigateway"))
			}
			if v, ok := tt.to.seen.Header["X-Forwarded-Proto"]; !ok || v != nil {
				t.Errorf("%s: X-Forwarded-Proto %v, want an omitted (nil) value", tt.path, v)
			}
		}
	}
}

func TestServeHTTPFailures(t *testing.T) {
	refused := &fakeProxy{region: "de", err: caddyhttp.Error(502, reverseproxy.NewDialError(errors.New("connection refused")))}
	h := testHandler(t, map[string]*fakeProxy{"de": refused})
	rec := serve(h, http.MethodGet, "/api/0/organizations/beta/")
	if rec.Code != 503 || rec.Body.String() != `{"error":"apigateway","detail":"Downstream service unavailable"}` {
		t.Fatalf("refused: %d %s", rec.Code, rec.Body)
	}
	// breaker max 1: a second failure opens it, then no call at all.
	serve(h, http.MethodGet, "/api/0/organizations/beta/")
	refused.seen = nil
	rec = serve(h, http.MethodGet, "/api/0/organizations/beta/")
	if rec.Code != 503 || refused.seen != nil {
		t.Fatalf("breaker: %d, called=%v", rec.Code, refused.seen != nil)
	}
	// Concurrency cap: with both slots taken, 429.
	de := &fakeProxy{region: "de", status: 200}
	h = testHandler(t, map[string]*fakeProxy{"de": de})
	h.regions["de"].limit.inflight.Store(2)
	rec = serve(h, http.MethodGet, "/api/0/organizations/beta/")
	if rec.Code != 429 || rec.Body.String() != `{"error":"apigateway","detail":"Too many requests"}` || de.seen != nil {
		t.Fatalf("cap: %d %s", rec.Code, rec.Body)
	}
}

func TestRegionStateShared(t *testing.T) {
	key := stateKey("de", "http://de.internal", 2, 1, time.Minute)
	a, err := acquireState(key, 2, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := acquireState(key, 2, 1, time.Minute)
	if a != b {
		t.Fatal("two acquisitions of one key gave two states")
	}
	other, _ := acquireState(stateKey("de", "http://de.internal", 3, 1, time.Minute), 3, 1, time.Minute)
	if other == a {
		t.Fatal("a changed max_concurrency shares the old state")
	}
	// Cleanup releases once per region and is idempotent.
	h := &Handler{regions: map[string]*region{"de": {stateKey: key}}}
	h.Cleanup()
	h.Cleanup()
	if n, _ := regionStates.References(key); n != 1 {
		t.Fatalf("%d references left, want 1", n)
	}
	regionStates.Delete(key)
	regionStates.Delete(stateKey("de", "http://de.internal", 3, 1, time.Minute))
	if n, ok := regionStates.References(key); ok {
		t.Fatalf("%d references left", n)
	}
	(&Handler{}).Cleanup() // nil-safe
}

// bodyProxy reads the request body as reverse_proxy's transport would.
type bodyProxy struct{}

func (b *bodyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if _, err := io.ReadAll(r.Body); err != nil {
		return caddyhttp.Error(http.StatusBadGateway, err)
	}
	w.WriteHeader(200)
	return nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// A client body that fails (truncated, too large) is the client's fault:
// 400 or 413, never a region failure.
func TestClientBodyFailure(t *testing.T) {
	for _, tt := range []struct {
		err    error
		status int
	}{
		{io.ErrUnexpectedEOF, 400},
		{&http.MaxBytesError{Limit: 10}, 413},
	} {
		h := testHandler(t, nil)
		m := newMetrics(nil)
		reg := &region{name: "us", host: "us.internal", base: "http://us.internal", m: m.series("us"),
			limit: &limiter{max: 2}, breaker: &breaker{max: 0, window: int64(60e9)}}
		reg.proxy = &bodyProxy{}
		h.regions["us"] = reg
		req := httptest.NewRequest(http.MethodPost, "/api/0/organizations/acme/chunk-upload/", io.NopCloser(errReader{tt.err}))
		rec := httptest.NewRecorder()
		reg.upload = reg.proxy
		if err := h.ServeHTTP(rec, req, nextHandler); err != nil {
			t.Fatal(err)
		}
		if rec.Code != tt.status {
			t.Errorf("%v: %d %s", tt.err, rec.Code, rec.Body)
		}
		if reg.breaker.failures.Load() != 0 {
			t.Errorf("%v counted against the region", tt.err)
		}
	}
}

// failingSource is a directory database that is down.
type failingSource struct{ directory.Source }

func (failingSource) OrganizationBySlug(context.Context, string) (directory.Organization, error) {
	return directory.Organization{}, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
}

func TestDirectoryDown(t *testing.T) {
	h := testHandler(t, map[string]*fakeProxy{"us": {region: "us", status: 200}})
	h.dir = directory.New(failingSource{}, directory.Options{})
	rec := serve(h, http.MethodGet, "/api/0/organizations/acme/")
	if rec.Code != 503 || rec.Body.String() != `{"error":"apigateway","detail":"Service unavailable"}` {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// The request is given back as the client sent it, for the access log.
func TestRequestRestored(t *testing.T) {
	us := &fakeProxy{region: "us", status: 200}
	h := testHandler(t, map[string]*fakeProxy{"us": us})
	req := httptest.NewRequest(http.MethodGet, "/api/0/organizations/acme/", nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	host := req.Host
	_ = h.ServeHTTP(httptest.NewRecorder(), req, nextHandler)
	if req.Host != host || req.Header.Get("X-Forwarded-Proto") != "https" || req.Header.Get("X-Apigateway") != "" {
		t.Fatalf("request left modified: Host %q, headers %v", req.Host, req.Header)
	}
	if _, ok := req.Header["X-Forwarded-Host"]; ok {
		t.Fatal("X-Forwarded-Host left behind")
	}
}

// BenchmarkServeHTTP measures what the gateway adds to reverse_proxy:
// route, directory cache hit, limits, header rules, metrics. The region's
// proxy is a stub, so this is the gateway's own cost per request.
func BenchmarkServeHTTP(b *testing.B) {
	us := &fakeProxy{region: "us", status: 200, quiet: true}
	h := testHandler(b, map[string]*fakeProxy{"us": us})
	h.regions["us"].limit.max = 1 << 30
	req := httptest.NewRequest(http.MethodGet, "/api/0/organizations/acme/issues/?query=is%3Aunresolved", nil)
	w := &discardWriter{h: http.Header{}}
	_ = h.ServeHTTP(w, req, nextHandler) // fills the directory cache
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		_ = h.ServeHTTP(w, req, nextHandler)
	}
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

type abortProxy struct{}

func (abortProxy) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	w.WriteHeader(200)
	panic(http.ErrAbortHandler)
}

// A stream that breaks after its head still releases the region's slot
// and is counted.
func TestAbortedStream(t *testing.T) {
	h := testHandler(t, map[string]*fakeProxy{"us": {region: "us", status: 200}})
	reg := h.regions["us"]
	reg.proxy = abortProxy{}
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Fatalf("recovered %v", v)
			}
		}()
		serve(h, http.MethodGet, "/api/0/organizations/acme/")
	}()
	if n := reg.limit.inflight.Load(); n != 0 {
		t.Fatalf("%d slots still taken", n)
	}
	var m dto.Metric
	if err := reg.m.requests[outcomeAborted].Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Fatalf("aborted counted %v times", got)
	}
}
