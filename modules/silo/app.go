package silo

import (
	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the sentry_silo app.
type App struct{}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "sentry_silo", New: func() caddy.Module { return new(App) }}
}

func (a *App) Start() error { return nil }
func (a *App) Stop() error  { return nil }

var _ caddy.App = (*App)(nil)
