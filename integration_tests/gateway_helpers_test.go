package integration_tests

import (
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
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// seenRequest is what a fake region (or the fake control silo) received.
type seenRequest struct {
	Method     string
	RequestURI string
	Host       string
	Header     http.Header
	BodyLen    int
	BodySHA    string
	RemoteAddr string
}

// fakeUpstream is a fake region or control silo on 127.0.0.1. It records
// every request and answers with the current handler (by default 200 and
// its own name).
type fakeUpstream struct {
	name    string
	srv     *httptest.Server
	mu      sync.Mutex
	seen    []seenRequest
	handler atomic.Pointer[http.HandlerFunc]
}

func newFakeUpstream(t *testing.T, name string) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{name: name}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.New()
		n, _ := io.Copy(sum, r.Body)
		f.mu.Lock()
		f.seen = append(f.seen, seenRequest{
			Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(),
			BodyLen: int(n), BodySHA: hex.EncodeToString(sum.Sum(nil)), RemoteAddr: r.RemoteAddr,
		})
		f.mu.Unlock()
		if h := f.handler.Load(); h != nil {
			(*h)(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "hello from "+name)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeUpstream) URL() string { return f.srv.URL }

// Host is host:port, what the gateway must send as Host.
func (f *fakeUpstream) Host() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fakeUpstream) respond(h http.HandlerFunc) { f.handler.Store(&h) }

func (f *fakeUpstream) reset() {
	f.mu.Lock()
	f.seen = nil
	f.mu.Unlock()
	f.handler.Store(nil)
}

func (f *fakeUpstream) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

func (f *fakeUpstream) last(t *testing.T) seenRequest {
	t.Helper()
	r := f.requests()
	if len(r) == 0 {
		t.Fatalf("%s received no request", f.name)
	}
	return r[len(r)-1]
}

// gateway is a running binary with sentry_region_route in front of a fake
// control silo, regions us and de, and three regions for failure tests:
// flaky (breaker), slow (timeouts, concurrency cap) and down (nothing
// listens).
type gateway struct {
	c       *harness.Caddy
	base    string
	dbPath  string
	us, de  *fakeUpstream
	flaky   *fakeUpstream
	slow    *fakeUpstream
	control *fakeUpstream
	client  *http.Client
}

type gatewayOptions struct {
	mode       string // "" or "monolith"
	routeBlock string // lines inside sentry_region_route { }
	// deGateway, when set, is the gateway_address of region de (its
	// address then points at nothing).
	deGateway bool
}

func startGateway(t *testing.T, opts gatewayOptions) *gateway {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binary; left out under -short")
	}
	g := &gateway{
		us: newFakeUpstream(t, "us"), de: newFakeUpstream(t, "de"),
		flaky: newFakeUpstream(t, "flaky"), slow: newFakeUpstream(t, "slow"),
		control: newFakeUpstream(t, "control"),
		dbPath:  filepath.Join(t.TempDir(), "silo.db"),
	}
	// down is a reserved port nobody listens on: connections are refused.
	admin, site, down := harness.ReservePort(t), harness.ReservePort(t), harness.ReservePort(t)
	g.base = site.URL()
	mode := ""
	if opts.mode != "" {
		mode = "\t\tmode " + opts.mode + "\n"
	}
	deRegion := "\t\tregion de " + g.de.URL() + "\n"
	if opts.deGateway {
		deRegion = fmt.Sprintf("\t\tregion de %s {\n\t\t\tgateway_address %s\n\t\t}\n", harness.ReservePort(t).URL(), g.de.URL())
	}
	caddyfile := fmt.Sprintf(`{
%s	sentry_silo {
%s		storage sqlite %s
		region us %s
%s		region flaky %s
		region slow %s
		region down %s
		default_region us
		url_prefix https://sentry.io
		organization 1 acme us
		organization 2 beta de
		organization 3 flaky-org flaky
		organization 4 slow-org slow
		organization 5 down-org down
		directory_cache 1s 1s
		drainer {
			off
		}
	}
}
http://%s {
	sentry_region_route {
%s
	}
	reverse_proxy %s
}
`, harness.GlobalOptions(admin), mode, g.dbPath, g.us.URL(), deRegion, g.flaky.URL(), g.slow.URL(), down.URL(),
		site.Addr, opts.routeBlock, g.control.Host())
	g.c = harness.Start(t, admin, caddyfile)
	g.client = &http.Client{
		Timeout: 60 * time.Second,
		// The gateway must not follow redirects, and neither may we to
		// see what it did.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
	}
	t.Cleanup(g.client.CloseIdleConnections)
	return g
}

// do sends a request through the gateway and reads the whole answer.
func (g *gateway) do(t *testing.T, method, path string, header http.Header, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, g.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := g.client.Do(req)
	// Right after a reload, a new connection the kernel queued on the
	// listening socket Caddy closed is reset before any handler sees it
	// (docs/operations.md, Reloads). A client retries an idempotent
	// request then, and so does this one, at once: the reset means the
	// socket that queued it is closed, so a new connection goes to the
	// new config's.
	for try := 0; err != nil && body == nil && (method == http.MethodGet || method == http.MethodHead) && try < 3; try++ {
		g.client.CloseIdleConnections()
		retry, _ := http.NewRequest(method, g.base+path, nil)
		retry.Header = req.Header
		resp, err = g.client.Do(retry)
	}
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, b
}

func (g *gateway) get(t *testing.T, path string) (*http.Response, []byte) {
	t.Helper()
	return g.do(t, http.MethodGet, path, nil, nil)
}

// db opens the instance's SQLite database for the directory rows the
// tests need, once the migrations (run in the background at start) have
// created the directory tables.
func (g *gateway) db(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", g.dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	waitForTables(t, db, 20*time.Second, g.c.Logs, "sentry_projectkeymapping")
	return db
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// wantAPIError checks an apigw error answer.
func wantAPIError(t *testing.T, resp *http.Response, body []byte, status int, detail string) {
	t.Helper()
	want := fmt.Sprintf(`{"error":"apigateway","detail":%q}`, detail)
	if resp.StatusCode != status || string(body) != want {
		t.Fatalf("got %d %s; want %d %s", resp.StatusCode, body, status, want)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if resp.Header.Get("X-Sentry-Proxy-URL") != "" {
		t.Fatalf("error answer carries X-Sentry-Proxy-URL")
	}
}
