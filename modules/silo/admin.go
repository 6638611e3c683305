package silo

import (
	"errors"
	"net/http"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"

	"github.com/sentrysilo/caddy-silo/modules/internal/admin"
)

func init() {
	caddy.RegisterModule(adminModule{})
}

// active is the running sentry_silo app. The admin API is built per admin
// server, not per config, so it finds the app here: Start publishes it and
// Stop withdraws it only if it is still the published one (during a reload
// the new app starts before the old one stops).
var active atomic.Pointer[App]

// setActive publishes a as the app the admin API serves. Call it at the
// end of a successful Start.
func setActive(a *App) { active.Store(a) }

// clearActive withdraws a, unless a newer app has been published since.
// Call it at the beginning of Stop.
func clearActive(a *App) { active.CompareAndSwap(a, nil) }

// activeApp is the app the admin API serves, nil when none runs.
func activeApp() *App { return active.Load() }

// adminModule is the admin.api.sentry_silo module: the operator console's
// routes under /sentry_silo/ (docs/admin-api.md). The work is done by
// admin.API.
type adminModule struct{}

// CaddyModule returns the Caddy module information.
func (adminModule) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.sentry_silo",
		New: func() caddy.Module { return new(adminModule) },
	}
}

// Routes returns the admin routes.
func (adminModule) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{
		Pattern: admin.Prefix,
		Handler: caddy.AdminHandlerFunc(serveAdmin),
	}}
}

func serveAdmin(w http.ResponseWriter, r *http.Request) error {
	app := activeApp()
	if app == nil || app.payloads.admin.Health == nil {
		return caddy.APIError{
			HTTPStatus: http.StatusServiceUnavailable,
			Err:        errors.New("no sentry_silo app with a store is running"),
			Message:    "no sentry_silo app with a store is running",
		}
	}
	err := consoleAPI(app).ServeHTTP(w, r)
	var he *admin.HTTPError
	if errors.As(err, &he) {
		msg := he.Message
		if he.Status < 500 || he.Err == nil {
			return caddy.APIError{HTTPStatus: he.Status, Err: he, Message: msg}
		}
		return caddy.APIError{HTTPStatus: he.Status, Err: he, Message: msg + ": " + he.Err.Error()}
	}
	return err
}

var _ caddy.AdminRouter = adminModule{}
