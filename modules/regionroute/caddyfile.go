package regionroute

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("sentry_region_route", parseCaddyfile)
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	sentry_region_route {
//		read_timeout <duration>
//		upload_timeout <duration>
//		max_concurrency <n>
//		breaker <failures> <window>
//		control_path <pattern...>
//		pin_path <pattern...>
//	}
//
// Defaults are applied in Provision, not here.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	given := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		parse, ok := subdirectives[opt]
		if !ok {
			return d.Errf("unknown subdirective %q (want read_timeout, upload_timeout, max_concurrency, breaker, control_path or pin_path)", opt)
		}
		// Every option but the path lists holds one value: a second
		// line would silently replace the first.
		if opt != "control_path" && opt != "pin_path" {
			if given[opt] {
				return d.Errf("%s is given twice", opt)
			}
			given[opt] = true
		}
		if err := parse(d, h); err != nil {
			return err
		}
	}
	// Whether a control_path does something depends on the pin_path
	// lines too, wherever they are in the block.
	if err := checkExtraPaths(h.ControlPath, h.PinPath); err != nil {
		return d.Errf("sentry_region_route: %v", err)
	}
	return nil
}

// subdirectives read one line of the block each (the dispenser is on its
// name) into h.
var subdirectives = map[string]func(d *caddyfile.Dispenser, h *Handler) error{
	"read_timeout":    func(d *caddyfile.Dispenser, h *Handler) error { return oneDuration(d, &h.ReadTimeout) },
	"upload_timeout":  func(d *caddyfile.Dispenser, h *Handler) error { return oneDuration(d, &h.UploadTimeout) },
	"max_concurrency": parseMaxConcurrency,
	"breaker":         parseBreaker,
	"control_path":    func(d *caddyfile.Dispenser, h *Handler) error { return pathPatterns(d, &h.ControlPath) },
	"pin_path":        func(d *caddyfile.Dispenser, h *Handler) error { return pathPatterns(d, &h.PinPath) },
}

func oneDuration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	name := d.Val()
	if !d.NextArg() {
		return d.ArgErr()
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil || dur <= 0 {
		return d.Errf("%s: invalid duration %q", name, d.Val())
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	*dst = caddy.Duration(dur)
	return nil
}

func parseMaxConcurrency(d *caddyfile.Dispenser, h *Handler) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	n, err := strconv.Atoi(d.Val())
	if err != nil || n <= 0 {
		return d.Errf("max_concurrency: want a positive integer, got %q", d.Val())
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	h.MaxConcurrency = n
	return nil
}

func parseBreaker(d *caddyfile.Dispenser, h *Handler) error {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return d.Errf("breaker: want <failures> <window>, got %d arguments", len(args))
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n <= 0 {
		return d.Errf("breaker: failures must be a positive integer, got %q", args[0])
	}
	dur, err := caddy.ParseDuration(args[1])
	if err != nil || dur <= 0 {
		return d.Errf("breaker: invalid window %q", args[1])
	}
	h.Breaker = &BreakerConfig{Failures: n, Window: caddy.Duration(dur)}
	return nil
}

// pathPatterns reads a control_path or pin_path line; lines add up.
func pathPatterns(d *caddyfile.Dispenser, dst *[]string) error {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("%s: want at least one path pattern", name)
	}
	for _, p := range args {
		if err := checkExtraPattern(p); err != nil {
			return d.Errf("%s %v", name, err)
		}
	}
	*dst = append(*dst, args...)
	return nil
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
