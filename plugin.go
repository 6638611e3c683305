// Package caddysilo plugs the caddy-silo modules into Caddy.
//
// Build with: xcaddy build --with github.com/sentrysilo/caddy-silo
//
// The root package holds no logic. It imports every module package so that
// the root import path alone gets everything, and it registers the directive
// order in one place so that every way of building gets the same order.
package caddysilo

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	_ "github.com/sentrysilo/caddy-silo/modules/credproxy"
	_ "github.com/sentrysilo/caddy-silo/modules/health"
	_ "github.com/sentrysilo/caddy-silo/modules/regionroute"
	_ "github.com/sentrysilo/caddy-silo/modules/silo"
	_ "github.com/sentrysilo/caddy-silo/modules/silocmd"
	_ "github.com/sentrysilo/caddy-silo/modules/siloconsole"
	_ "github.com/sentrysilo/caddy-silo/modules/webhookcapture"
)

func init() {
	// Two directives registered before the same anchor run in registration
	// order, so this one init fixes: health and readiness endpoints,
	// capture, cred proxy, region route, then reverse_proxy (the control
	// silo application).
	httpcaddyfile.RegisterDirectiveOrder("sentry_silo_health", httpcaddyfile.Before, "reverse_proxy")
	httpcaddyfile.RegisterDirectiveOrder("sentry_webhook_capture", httpcaddyfile.Before, "reverse_proxy")
	httpcaddyfile.RegisterDirectiveOrder("sentry_cred_proxy", httpcaddyfile.Before, "reverse_proxy")
	httpcaddyfile.RegisterDirectiveOrder("sentry_region_route", httpcaddyfile.Before, "reverse_proxy")
	// The console answers everything it is given, like file_server.
	httpcaddyfile.RegisterDirectiveOrder("sentry_silo_console", httpcaddyfile.Before, "file_server")
}
