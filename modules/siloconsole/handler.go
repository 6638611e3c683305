// Package siloconsole is the sentry_silo_console HTTP handler: the
// operator dashboard, served in a site block and talking to the admin API
// on Caddy's admin endpoint. The page and the forwarder live in
// modules/internal/console; this package adapts them to Caddy
// (docs/dashboard.md).
package siloconsole

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/sentrysilo/caddy-silo/modules/internal/console"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("sentry_silo_console", parseCaddyfile)
}

// Handler is the sentry_silo_console HTTP handler. It answers every
// request it is given (it never calls the next handler): mount it on a
// path of its own, behind the site's access control.
type Handler struct {
	// Admin is the address of Caddy's admin endpoint, as the admin
	// option's listen takes it ("localhost:2019", "unix//run/admin.sock")
	// [the Caddyfile's global admin option, else localhost:2019 or
	// CADDY_ADMIN].
	Admin string `json:"admin,omitempty"`
	// ReadOnly refuses every action from this console.
	ReadOnly bool `json:"read_only,omitempty"`
	// Refresh is how often the page reloads its data [5s].
	Refresh caddy.Duration `json:"refresh,omitempty"`

	console *console.Console
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.sentry_silo_console",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision builds the console. Nothing is dialled: the admin endpoint is
// called when the page asks.
func (h *Handler) Provision(caddy.Context) error {
	network, address, err := adminAddress(h.Admin)
	if err != nil {
		return err
	}
	h.console = console.New(console.Config{
		AdminNetwork: network,
		AdminAddress: address,
		ReadOnly:     h.ReadOnly,
		Refresh:      time.Duration(h.Refresh),
		User:         authenticatedUser,
		BrowserPath:  browserPath,
	})
	return nil
}

// Validate checks the options.
func (h *Handler) Validate() error {
	if h.Refresh < 0 || (h.Refresh > 0 && time.Duration(h.Refresh) < time.Second) {
		return fmt.Errorf("sentry_silo_console: refresh %s: at least 1s", time.Duration(h.Refresh))
	}
	_, _, err := adminAddress(h.Admin)
	return err
}

// Cleanup closes the idle connections to the admin endpoint.
func (h *Handler) Cleanup() error {
	if h.console != nil {
		h.console.Close()
	}
	return nil
}

// authenticatedUser is the user the site's authentication handler
// (basic_auth, forward_auth's copy_headers aside) named for r, "" when
// none ran.
func authenticatedUser(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	user, _ := repl.GetString("http.auth.user.id")
	return user
}

// browserPath is the path of the request as the browser sent it, before
// any rewrite (handle_path strips its prefix).
func browserPath(r *http.Request) string {
	if or, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && or.URL != nil {
		return or.URL.EscapedPath()
	}
	return ""
}

// adminAddress resolves addr (or the default admin address) into a
// network and an address to dial.
func adminAddress(addr string) (network, address string, err error) {
	if addr == "" {
		addr = caddy.DefaultAdminListen
	}
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil {
		return "", "", fmt.Errorf("sentry_silo_console: admin %q: %v", addr, err)
	}
	if na.PortRangeSize() > 1 {
		return "", "", fmt.Errorf("sentry_silo_console: admin %q: one address, not a port range", addr)
	}
	if na.IsUnixNetwork() {
		return na.Network, na.Host, nil
	}
	if na.IsFdNetwork() {
		return "", "", fmt.Errorf("sentry_silo_console: admin %q: the console cannot dial a file descriptor; give the admin endpoint's address", addr)
	}
	return na.Network, na.JoinHostPort(0), nil
}

// ServeHTTP serves the console.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	h.console.ServeHTTP(w, r)
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	sentry_silo_console {
//		admin <address>
//		read_only
//		refresh <duration>
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	given := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if given[opt] {
			return d.Errf("%s is given twice", opt)
		}
		given[opt] = true
		switch opt {
		case "admin":
			if !d.AllArgs(&h.Admin) {
				return d.ArgErr()
			}
		case "read_only":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.ReadOnly = true
		case "refresh":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil {
				return d.Errf("refresh: %v", err)
			}
			h.Refresh = caddy.Duration(dur)
		default:
			return d.Errf("unknown sentry_silo_console option %q", opt)
		}
	}
	return nil
}

// parseCaddyfile builds the handler; without its own admin option it
// talks to the admin endpoint the global admin option sets, so the
// address has one home.
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if handler.Admin == "" {
		if ac, ok := h.Option("admin").(*caddy.AdminConfig); ok && ac != nil {
			if ac.Disabled {
				return nil, errors.New("sentry_silo_console: the global admin option turns the admin endpoint off, and the console works through it")
			}
			handler.Admin = ac.Listen
		}
	}
	return handler, nil
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
