// Package health is the sentry_silo_health handler: liveness and readiness
// endpoints for load balancers, on the public listener (a load balancer
// does not reach Caddy's admin endpoint). It answers its two paths and
// passes every other request on.
//
// The paths are under /_silo/, which no Sentry URL uses: Sentry serves its
// own health check at /_health/ (the control silo application's, and each
// region's, which the drainer probes), and that path keeps going to the
// control silo application.
package health

import (
	"encoding/json"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/sentrysilo/caddy-silo/modules/silo"
)

// The endpoints.
const (
	// HealthPath answers 200 while the process serves (liveness).
	HealthPath = "/_silo/health"
	// ReadyPath answers 200 once the instance can do its work and 503
	// with the reasons until then (readiness; see silo.Readiness).
	ReadyPath = "/_silo/ready"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("sentry_silo_health", parseCaddyfile)
}

// Handler is the http.handlers.sentry_silo_health module. It has no
// options.
type Handler struct {
	ready func() silo.Readiness
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.sentry_silo_health",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision finds the config's sentry_silo app, whose readiness it serves.
func (h *Handler) Provision(ctx caddy.Context) error {
	app, err := silo.FromContext(ctx, "sentry_silo_health")
	if err != nil {
		return err
	}
	h.ready = app.Readiness
	return nil
}

var (
	healthBody = []byte(`{"status":"ok"}` + "\n")
	allowed    = []string{"GET, HEAD"}
)

// ServeHTTP answers the two endpoints and passes everything else on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	var status int
	var body []byte
	switch r.URL.Path {
	case HealthPath:
		status, body = http.StatusOK, healthBody
	case ReadyPath:
		rd := h.ready()
		status = http.StatusOK
		if !rd.Ready {
			status = http.StatusServiceUnavailable
		}
		body, _ = json.Marshal(rd)
		body = append(body, '\n')
	default:
		return next.ServeHTTP(w, r)
	}
	hdr := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr["Allow"] = allowed
		w.WriteHeader(http.StatusMethodNotAllowed)
		return nil
	}
	hdr.Set("Content-Type", "application/json")
	// A cached answer would keep an instance in or out of the pool.
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile reads the directive, which takes no arguments:
//
//	sentry_silo_health
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("sentry_silo_health takes no options, not %q", d.Val())
	}
	return nil
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
