package console

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// adminPeer is a real HTTP server standing for Caddy's admin endpoint: it
// records what reaches it and answers {"ok": true}.
type adminPeer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []*http.Request
	body []string
}

func newAdminPeer(t *testing.T) *adminPeer {
	p := &adminPeer{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.seen = append(p.seen, r)
		p.body = append(p.body, string(b))
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "admin=1")
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *adminPeer) requests() ([]*http.Request, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*http.Request(nil), p.seen...), append([]string(nil), p.body...)
}

func newTestConsole(t *testing.T, admin string, readOnly bool) *httptest.Server {
	return newTestConsoleFor(t, Config{AdminNetwork: "tcp", AdminAddress: admin, ReadOnly: readOnly})
}

func newTestConsoleFor(t *testing.T, cfg Config) *httptest.Server {
	c := New(cfg)
	t.Cleanup(c.Close)
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, url, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestPageAndAssets(t *testing.T) {
	srv := newTestConsole(t, "127.0.0.1:1", false)
	cases := []struct {
		method, path string
		status       int
		ctype        string
		contains     string
		location     string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<script src="app.js" defer></script>`, ""},
		{"GET", "/ops/console/", 200, "text/html; charset=utf-8", "caddy-silo console", ""},
		{"HEAD", "/ops/console/", 200, "text/html; charset=utf-8", "", ""},
		{"GET", "/ops/console/app.js", 200, "text/javascript; charset=utf-8", "textContent", ""},
		{"GET", "/ops/console/app.css", 200, "text/css; charset=utf-8", "--accent", ""},
		{"GET", "/ops/console/console.json", 200, "application/json", `"read_only":false`, ""},
		{"GET", "/ops/console?x=1", 308, "", "", "/ops/console/?x=1"},
		{"GET", "/ops/console/logo.png", 404, "application/json", `"error"`, ""},
		{"POST", "/ops/console/", 405, "application/json", `"error"`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, body := do(t, tc.method, srv.URL+tc.path, "", nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.ctype != "" && resp.Header.Get("Content-Type") != tc.ctype {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tc.ctype)
			}
			if !strings.Contains(body, tc.contains) {
				t.Errorf("body lacks %q: %.200s", tc.contains, body)
			}
			if got := resp.Header.Get("Location"); got != tc.location {
				t.Errorf("Location %q, want %q", got, tc.location)
			}
			for k, v := range securityHeaders {
				if resp.Header.Get(k) != v {
					t.Errorf("%s: %q, want %q", k, resp.Header.Get(k), v)
				}
			}
		})
	}
}

// The page never builds HTML from data: no innerHTML, outerHTML,
// insertAdjacentHTML, document.write or eval in its script, and nothing
// inline in its page (the CSP would refuse it).
func TestAssetsBuildNoHTMLFromData(t *testing.T) {
	js, _ := assets.ReadFile("assets/app.js")
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style'", "onclick"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
	html, _ := assets.ReadFile("assets/index.html")
	for _, bad := range []string{"<script>", "style=", " on", "http://", "https://"} {
		if strings.Contains(string(html), bad) {
			t.Errorf("index.html holds %q (inline code or an outside address)", bad)
		}
	}
}

func TestForward(t *testing.T) {
	admin := newAdminPeer(t)
	adminAddr := strings.TrimPrefix(admin.srv.URL, "http://")
	rw := newTestConsole(t, adminAddr, false)
	ro := newTestConsole(t, adminAddr, true)
	alice := newTestConsoleFor(t, Config{AdminNetwork: "tcp", AdminAddress: adminAddr, User: func(*http.Request) string { return "alice" }})
	origin := func(srv *httptest.Server) string { return srv.URL }
	cases := []struct {
		name     string
		srv      *httptest.Server
		method   string
		path     string
		body     string
		header   map[string]string
		status   int
		want     string // the request line the admin endpoint saw, "" when nothing reached it
		wantOrg  bool   // the admin endpoint saw the browser's Origin
		wantBody string // the body it saw, when not the one sent
	}{
		{name: "read", srv: rw, method: "GET", path: "/c/sentry_silo/dead_letters?region=us&limit=5",
			header: map[string]string{"Cookie": "s=1", "Authorization": "Basic eDp5", "Referer": "http://x/", "Sec-Fetch-Mode": "cors", "Origin": "http://evil.example"},
			status: http.StatusTeapot, want: "GET /sentry_silo/dead_letters?region=us&limit=5"},
		{name: "escaped mailbox", srv: rw, method: "GET", path: "/sentry_silo/mailboxes/github%3Aus%3A42",
			status: http.StatusTeapot, want: "GET /sentry_silo/mailboxes/github%3Aus%3A42"},
		{name: "action from the page", srv: rw, method: "POST", path: "/c/sentry_silo/dead_letters/7/replay",
			header: map[string]string{"Sec-Fetch-Site": "same-origin", "Cookie": "s=1"},
			status: http.StatusTeapot, want: "POST /sentry_silo/dead_letters/7/replay", wantOrg: true},
		{name: "a pause says the dashboard made it", srv: rw, method: "POST", path: "/c/sentry_silo/regions/us/pause", body: `{"reason":"restore","by":"mallory"}`,
			header: map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"},
			status: http.StatusTeapot, want: "POST /sentry_silo/regions/us/pause", wantOrg: true, wantBody: `{"by":"dashboard","reason":"restore"}`},
		{name: "a pause without a body", srv: rw, method: "POST", path: "/c/sentry_silo/mailboxes/github%3Aus%3A42/pause",
			status: http.StatusTeapot, want: "POST /sentry_silo/mailboxes/github%3Aus%3A42/pause", wantOrg: true, wantBody: `{"by":"dashboard"}`},
		{name: "a pause by the site's user", srv: alice, method: "POST", path: "/c/sentry_silo/regions/us/pause", body: `{"reason":"restore"}`,
			header: map[string]string{"Content-Type": "application/json"},
			status: http.StatusTeapot, want: "POST /sentry_silo/regions/us/pause", wantOrg: true, wantBody: `{"by":"dashboard (alice)","reason":"restore"}`},
		{name: "a pause body that is not an object", srv: rw, method: "POST", path: "/c/sentry_silo/regions/us/pause", body: `[1]`,
			header: map[string]string{"Content-Type": "application/json"},
			status: http.StatusTeapot, want: "POST /sentry_silo/regions/us/pause", wantOrg: true},
		{name: "delete from the page", srv: rw, method: "DELETE", path: "/c/sentry_silo/dead_letters/7",
			status: http.StatusTeapot, want: "DELETE /sentry_silo/dead_letters/7", wantOrg: true},
		{name: "action without Origin", srv: rw, method: "POST", path: "/c/sentry_silo/dead_letters/7/replay",
			header: map[string]string{"Origin": ""}, status: http.StatusForbidden},
		{name: "action from another site", srv: rw, method: "POST", path: "/c/sentry_silo/dead_letters/7/replay",
			header: map[string]string{"Origin": "http://evil.example"}, status: http.StatusForbidden},
		{name: "action with Origin null", srv: rw, method: "POST", path: "/c/sentry_silo/dead_letters/7/replay",
			header: map[string]string{"Origin": "null"}, status: http.StatusForbidden},
		{name: "action the browser calls cross-site", srv: rw, method: "POST", path: "/c/sentry_silo/dead_letters/7/replay",
			header: map[string]string{"Sec-Fetch-Site": "cross-site"}, status: http.StatusForbidden},
		{name: "form body", srv: rw, method: "POST", path: "/c/sentry_silo/regions/us/pause", body: "reason=x",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: http.StatusUnsupportedMediaType},
		{name: "body too large", srv: rw, method: "POST", path: "/c/sentry_silo/regions/us/pause", body: strings.Repeat("x", maxActionBody+1),
			header: map[string]string{"Content-Type": "application/json"}, status: http.StatusRequestEntityTooLarge},
		{name: "read-only", srv: ro, method: "POST", path: "/c/sentry_silo/dead_letters/7/replay", status: http.StatusForbidden},
		{name: "read-only still reads", srv: ro, method: "GET", path: "/c/sentry_silo/status", status: http.StatusTeapot, want: "GET /sentry_silo/status"},
		{name: "dot segments", srv: rw, method: "GET", path: "/c/sentry_silo/../load", status: http.StatusBadRequest},
		{name: "encoded dots", srv: rw, method: "POST", path: "/c/sentry_silo/%2e%2e/stop", status: http.StatusBadRequest},
		{name: "encoded slash", srv: rw, method: "GET", path: "/c/sentry_silo/x%2F..%2Fconfig", status: http.StatusBadRequest},
		{name: "double slash", srv: rw, method: "GET", path: "/c/sentry_silo//config/", status: http.StatusBadRequest},
		{name: "other method", srv: rw, method: "PUT", path: "/c/sentry_silo/regions", status: http.StatusMethodNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := admin.requests()
			header := map[string]string{}
			if tc.method == "POST" || tc.method == "DELETE" {
				header["Origin"] = origin(tc.srv)
			}
			for k, v := range tc.header {
				header[k] = v
			}
			if header["Origin"] == "" {
				delete(header, "Origin")
			}
			resp, body := doRaw(t, tc.method, tc.srv, tc.path, tc.body, header)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			var shape map[string]any
			if err := json.Unmarshal([]byte(body), &shape); err != nil {
				t.Fatalf("answer is not JSON: %q", body)
			}
			if resp.Header.Get("Set-Cookie") != "" {
				t.Errorf("the admin endpoint's Set-Cookie was relayed")
			}
			after, bodies := admin.requests()
			if tc.want == "" {
				if len(after) != len(before) {
					t.Fatalf("the admin endpoint was called: %s %s", after[len(after)-1].Method, after[len(after)-1].URL)
				}
				return
			}
			if len(after) != len(before)+1 {
				t.Fatalf("the admin endpoint saw %d requests, want 1", len(after)-len(before))
			}
			got := after[len(after)-1]
			if line := got.Method + " " + got.URL.RequestURI(); line != tc.want {
				t.Errorf("admin saw %q, want %q", line, tc.want)
			}
			if got.Host != adminAddr {
				t.Errorf("admin saw Host %q, want %q", got.Host, adminAddr)
			}
			for _, h := range []string{"Cookie", "Authorization", "Referer", "Sec-Fetch-Mode", "Sec-Fetch-Site"} {
				if got.Header.Get(h) != "" {
					t.Errorf("the browser's %s reached the admin endpoint", h)
				}
			}
			if gotOrg := got.Header.Get("Origin"); tc.wantOrg != (gotOrg != "") || (tc.wantOrg && gotOrg != origin(tc.srv)) {
				t.Errorf("admin saw Origin %q (want the browser's: %v)", gotOrg, tc.wantOrg)
			}
			wantBody := tc.body
			if tc.wantBody != "" {
				wantBody = tc.wantBody
			}
			if b := bodies[len(bodies)-1]; b != wantBody {
				t.Errorf("admin saw body %q, want %q", b, wantBody)
			}
		})
	}
}

// doRaw sends path as it is written (dot segments and escapes included),
// which http.NewRequest would clean.
func doRaw(t *testing.T, method string, srv *httptest.Server, path, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = path
	if i := strings.Index(path, "?"); i >= 0 {
		req.URL.Opaque, req.URL.RawQuery = path[:i], path[i+1:]
	}
	if body == "" {
		req.Body, req.ContentLength = nil, 0
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// An admin endpoint that is down is a 502 with a message naming its
// address, not a hang or an empty answer.
func TestForwardAdminDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srv := newTestConsole(t, addr, false)
	resp, body := do(t, "GET", srv.URL+"/sentry_silo/status", "", nil)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, addr) || !strings.Contains(body, `"error"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

// Mounted under a stripped prefix (handle_path /silo/*), the console's
// redirects go to the address the browser asked for, not to the stripped
// one.
func TestRedirectUnderStrippedPrefix(t *testing.T) {
	srv := newTestConsoleFor(t, Config{AdminNetwork: "tcp", AdminAddress: "127.0.0.1:1", BrowserPath: func(r *http.Request) string {
		if r.URL.Path == "/" && r.URL.Query().Get("stripped") == "all" {
			return "/silo" // the browser asked for /silo; the prefix strip left /
		}
		return "/silo" + r.URL.EscapedPath()
	}})
	cases := []struct{ path, status, location string }{
		{"/?stripped=all", "308", "/silo/?stripped=all"},
		{"/", "200", ""},
		{"/app.js", "200", ""},
		{"/foo", "308", "/silo/foo/"},
	}
	for _, tc := range cases {
		resp, body := do(t, "GET", srv.URL+tc.path, "", nil)
		if got := strconv.Itoa(resp.StatusCode); got != tc.status || resp.Header.Get("Location") != tc.location {
			t.Errorf("%s: %s %q, want %s %q (%.100s)", tc.path, got, resp.Header.Get("Location"), tc.status, tc.location, body)
		}
	}
}
