// Package console is the operator dashboard: one web page, its script and
// its style sheet, embedded in the binary, and a narrow forwarder that
// sends the page's calls to the admin API on Caddy's admin endpoint. The
// sentry_silo_console handler (modules/console) adapts it to Caddy.
//
// The page is served from a site, not from the admin endpoint itself,
// because browsers cannot open a page there: Caddy refuses every request
// that carries Sec-Fetch-Mode (all of them, from a browser, to a loopback
// or https address) without an allowed Origin or Referer, and a typed or
// bookmarked address has neither (docs/dashboard.md). The admin endpoint
// keeps the last word on actions: the forwarder passes the browser's
// Origin with every POST and DELETE, so the admin endpoint's own origin
// check decides whether this page may act.
//
// Nothing here imports Caddy.
package console

import (
	"embed"
	"encoding/json"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed assets/index.html assets/app.js assets/app.css
var assets embed.FS

// DefaultRefresh is how often the page reloads its data: 5s keeps an
// hour of rate samples at 720 points and costs the admin API three small
// reads per open page every 5s.
const DefaultRefresh = 5 * time.Second

// securityHeaders go on every answer: the page runs only its own script
// and style sheet, talks only to its own origin, cannot be framed, and
// nothing it serves is sniffed into another type. Referrer-Policy is
// same-origin, not no-referrer: under no-referrer a browser sends
// "Origin: null" with a same-origin POST, and the actions need the real
// Origin.
var securityHeaders = map[string]string{
	"Content-Security-Policy":      "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options":       "nosniff",
	"X-Frame-Options":              "DENY",
	"Referrer-Policy":              "same-origin",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
	"Cache-Control":                "no-store",
}

// Console serves the dashboard. Its zero value is not usable: build it
// with New.
type Console struct {
	admin    *adminClient
	readOnly bool
	refresh  time.Duration
	userOf   func(*http.Request) string
	pathOf   func(*http.Request) string
}

// Config is what a Console needs.
type Config struct {
	// AdminNetwork and AdminAddress say where Caddy's admin endpoint
	// listens: "tcp" and "localhost:2019", or "unix" and a socket path.
	AdminNetwork string
	AdminAddress string
	// ReadOnly refuses every action here, whatever the admin endpoint
	// would allow; the page then shows no action button.
	ReadOnly bool
	// Refresh is how often the page reloads its data; 0 means
	// DefaultRefresh.
	Refresh time.Duration
	// User, when set, names the user the site authenticated for a
	// request ("" when none): pauses made from the page record it.
	User func(*http.Request) string
	// BrowserPath, when set, is the escaped path the browser asked for,
	// before the site's rewrites (handle_path strips its prefix): the
	// console's redirects must point there. nil means the request's path.
	BrowserPath func(*http.Request) string
}

// New returns a Console for cfg.
func New(cfg Config) *Console {
	refresh := cfg.Refresh
	if refresh <= 0 {
		refresh = DefaultRefresh
	}
	return &Console{
		admin:    newAdminClient(cfg.AdminNetwork, cfg.AdminAddress),
		readOnly: cfg.ReadOnly,
		refresh:  refresh,
		userOf:   cfg.User,
		pathOf:   cfg.BrowserPath,
	}
}

// browserPath is the escaped path the browser asked for.
func (c *Console) browserPath(r *http.Request) string {
	if c.pathOf != nil {
		if p := c.pathOf(r); p != "" {
			return p
		}
	}
	return r.URL.EscapedPath()
}

// user is who the site authenticated for r, "" when none or unknown.
func (c *Console) user(r *http.Request) string {
	if c.userOf == nil {
		return ""
	}
	return c.userOf(r)
}

// Close releases the idle connections to the admin endpoint.
func (c *Console) Close() { c.admin.close() }

// apiMarker is where, in a request's path, the admin API's routes begin:
// the page calls <mount>/sentry_silo/<route> for the admin endpoint's
// /sentry_silo/<route>, so both read the same.
const apiMarker = "/sentry_silo/"

// files maps the last path segment of an asset to its embedded file and
// type.
var files = map[string][2]string{
	"":        {"assets/index.html", "text/html; charset=utf-8"},
	"app.js":  {"assets/app.js", "text/javascript; charset=utf-8"},
	"app.css": {"assets/app.css", "text/css; charset=utf-8"},
}

// ServeHTTP answers the page, its assets, its settings (console.json) and,
// under <mount>/sentry_silo/, the admin API through the forwarder. The
// console is mounted wherever the site's routes put it; every URL the page
// uses is relative to the page's own, which ends in a slash.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for k, v := range securityHeaders {
		w.Header().Set(k, v)
	}
	p := r.URL.EscapedPath()
	if i := strings.Index(p, apiMarker); i >= 0 {
		c.forward(w, r, p[i+len(apiMarker):])
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "the console's page and assets are read with GET")
		return
	}
	_, last := path.Split(p)
	if last == "console.json" {
		writeJSON(w, http.StatusOK, map[string]any{
			"read_only":       c.readOnly,
			"refresh_seconds": c.refresh.Seconds(),
		})
		return
	}
	f, ok := files[last]
	// The page's relative URLs need its address to end in a slash: the
	// page's address without one, or a name without an extension, is sent
	// to the address the browser asked for plus a slash.
	if browser := c.browserPath(r); (last == "" && !strings.HasSuffix(browser, "/")) || (!ok && !strings.Contains(last, ".")) {
		target := browser + "/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, target, http.StatusPermanentRedirect)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "no such file in the console")
		return
	}
	b, err := assets.ReadFile(f[0])
	if err != nil {
		writeError(w, http.StatusInternalServerError, "the console's embedded "+last+" is missing")
		return
	}
	w.Header().Set("Content-Type", f[1])
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// writeError answers the admin API's error shape, {"error": message}, so
// the page reads one shape whoever refused.
func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]string{"error": message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
