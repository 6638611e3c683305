package silo

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
)

// FromContext returns the config's sentry_silo app, loading it if it is
// not yet (every handler needs it in Provision). The error names the
// module that asked, as Caddy's own provisioning chain does.
func FromContext(ctx caddy.Context, module string) (*App, error) {
	v, err := ctx.App("sentry_silo")
	if err != nil {
		return nil, fmt.Errorf("%s needs the sentry_silo app: %w", module, err)
	}
	app, ok := v.(*App)
	if !ok {
		return nil, fmt.Errorf("%s: the sentry_silo app has unexpected type %T", module, v)
	}
	return app, nil
}
