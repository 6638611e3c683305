package silo

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/sentrysilo/caddy-silo/modules/internal/drain"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("sentry_silo", parseGlobalOption)
}

// parseGlobalOption sets up the app from the sentry_silo global option:
//
//	sentry_silo {
//		mode control|monolith
//		storage sqlite [<path>]
//		storage postgres <dsn>
//		directory_dsn <dsn>
//		migrate on|off
//		region <name> <address> {
//			gateway_address <url>
//		}
//		default_region <name>
//		url_prefix <url>
//		subnet_secret <secret>
//		directory_cache <ttl> [<negative_ttl>]
//		organization <id> <slug> <region>
//		integration <id> <provider> <external_id> <organization_id...>
//		drainer {
//			off
//			poll_interval <d>
//			workers <n>
//			claim_size <n>
//			max_attempts <n>
//			backoff <base> <rate> <cap>
//			max_age <d>
//			request_timeout <d>
//			skip_on_failure <provider...>
//			region_breaker <failures> <probe_interval>
//			lease <d>
//			dead_letter_retention <d>
//			callback_hosts <host[:port]...>
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("sentry_silo is configured twice; put all of it in one block")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "sentry_silo", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile fills the app from the sentry_silo block. It checks
// the cross references (regions named by default_region and organization
// lines) once the whole block is read, so that the error points at the
// line that names the unknown region.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	// A region may be named before it is defined, so references are
	// checked at the end, with the position of the line that names them.
	type regionRef struct {
		name, what, file string
		line             int
	}
	var refs []regionRef
	seen := map[string]bool{}

	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "mode":
			var mode string
			if !d.AllArgs(&mode) {
				return d.ArgErr()
			}
			if mode != ModeControl && mode != ModeMonolith {
				return d.Errf("mode must be control or monolith, not %q", mode)
			}
			a.Mode = mode
		case "storage":
			if a.Storage != nil {
				return d.Err("storage is set twice")
			}
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Err("storage needs an engine: storage sqlite [<path>] or storage postgres <dsn>")
			}
			switch args[0] {
			case EngineSQLite:
				if len(args) > 2 {
					return d.ArgErr()
				}
				a.Storage = &StorageConfig{Engine: EngineSQLite}
				if len(args) == 2 {
					a.Storage.Path = args[1]
				}
			case EnginePostgres:
				if len(args) != 2 {
					return d.Err("storage postgres needs exactly one DSN, e.g. storage postgres {env.SILO_DATABASE_URL}")
				}
				a.Storage = &StorageConfig{Engine: EnginePostgres, DSN: args[1]}
			default:
				return d.Errf("unknown storage engine %q: use sqlite or postgres", args[0])
			}
		case "directory_dsn":
			if !d.AllArgs(&a.DirectoryDSN) {
				return d.ArgErr()
			}
		case "migrate":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			switch v {
			case "on":
				a.Migrate = boolPtr(true)
			case "off":
				a.Migrate = boolPtr(false)
			default:
				return d.Errf("migrate must be on or off, not %q", v)
			}
		case "region":
			var rc RegionConfig
			if !d.NextArg() {
				return d.Err("region needs a name and an address: region <name> <address>")
			}
			rc.Name = d.Val()
			if !d.NextArg() {
				return d.Errf("region %s needs an address, e.g. http://10.0.0.5:8010", rc.Name)
			}
			rc.Address = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			if seen[rc.Name] {
				return d.Errf("region %q is defined twice", rc.Name)
			}
			seen[rc.Name] = true
			if err := checkURL(rc.Address); err != nil {
				return d.Errf("region %s: address %q: %v", rc.Name, rc.Address, err)
			}
			for n := d.Nesting(); d.NextBlock(n); {
				switch d.Val() {
				case "gateway_address":
					if !d.AllArgs(&rc.GatewayAddress) {
						return d.ArgErr()
					}
					if err := checkURL(rc.GatewayAddress); err != nil {
						return d.Errf("region %s: gateway_address %q: %v", rc.Name, rc.GatewayAddress, err)
					}
				default:
					return d.Errf("unrecognized region subdirective %q", d.Val())
				}
			}
			a.Regions = append(a.Regions, rc)
		case "default_region":
			if !d.AllArgs(&a.DefaultRegion) {
				return d.ArgErr()
			}
			refs = append(refs, regionRef{a.DefaultRegion, fmt.Sprintf("default_region %q", a.DefaultRegion), d.File(), d.Line()})
		case "url_prefix":
			if !d.AllArgs(&a.URLPrefix) {
				return d.ArgErr()
			}
			if err := checkURL(a.URLPrefix); err != nil {
				return d.Errf("url_prefix %q: %v", a.URLPrefix, err)
			}
		case "subnet_secret":
			if !d.AllArgs(&a.SubnetSecret) {
				return d.ArgErr()
			}
		case "directory_cache":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.Err("directory_cache needs <ttl> [<negative_ttl>]")
			}
			ttl, err := parseDuration(d, "directory_cache ttl", args[0])
			if err != nil {
				return err
			}
			a.DirectoryCache = &DirectoryCacheConfig{TTL: ttl}
			if len(args) == 2 {
				if a.DirectoryCache.NegativeTTL, err = parseDuration(d, "directory_cache negative_ttl", args[1]); err != nil {
					return err
				}
			}
		case "organization":
			var id, slug, region string
			if !d.AllArgs(&id, &slug, &region) {
				return d.Err("organization needs <id> <slug> <region>")
			}
			n, err := strconv.ParseInt(id, 10, 64)
			if err != nil || n <= 0 {
				return d.Errf("organization %s %s: id must be a positive integer", id, slug)
			}
			a.Organizations = append(a.Organizations, StaticOrganization{ID: n, Slug: slug, Region: region})
			refs = append(refs, regionRef{region, fmt.Sprintf("organization %s %s: region %q", id, slug, region), d.File(), d.Line()})
		case "integration":
			args := d.RemainingArgs()
			if len(args) < 4 {
				return d.Err("integration needs <id> <provider> <external_id> <organization_id...>, e.g. integration 10 github 555 1 2")
			}
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id <= 0 {
				return d.Errf("integration %s: id must be a positive integer", args[0])
			}
			in := StaticIntegration{ID: id, Provider: args[1], ExternalID: args[2]}
			for _, v := range args[3:] {
				org, err := strconv.ParseInt(v, 10, 64)
				if err != nil || org <= 0 {
					return d.Errf("integration %s %s %s: organization id %q must be a positive integer", args[0], args[1], args[2], v)
				}
				in.Organizations = append(in.Organizations, org)
			}
			a.Integrations = append(a.Integrations, in)
			// The rest is checked where the JSON is, with the same words.
			if err := (&App{Integrations: a.Integrations}).checkIntegrations(); err != nil {
				return d.Err(err.Error())
			}
		case "drainer":
			if a.Drainer != nil {
				return d.Err("drainer is set twice")
			}
			a.Drainer = new(DrainerConfig)
			if err := a.Drainer.unmarshalCaddyfile(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized sentry_silo option %q", d.Val())
		}
	}
	for _, r := range refs {
		if !seen[r.name] {
			return fmt.Errorf("%s is not a configured region (configured: %s), at %s:%d", r.what, strings.Join(sortedKeys(seen), ", "), r.file, r.line)
		}
	}
	return nil
}

func (c *DrainerConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	given := map[string]bool{}
	for n := d.Nesting(); d.NextBlock(n); {
		opt := d.Val()
		if given[opt] && opt != "callback_hosts" { // callback_hosts lines add up
			// A second line would silently replace the first.
			return d.Errf("drainer %s is given twice", opt)
		}
		given[opt] = true
		var err error
		switch opt {
		case "off":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.Off = true
		case "poll_interval":
			c.PollInterval, err = oneDuration(d)
		case "workers":
			c.Workers, err = onePositiveInt(d)
		case "claim_size":
			c.ClaimSize, err = onePositiveInt(d)
		case "max_attempts":
			c.MaxAttempts, err = onePositiveInt(d)
		case "backoff":
			args := d.RemainingArgs()
			if len(args) != 3 {
				return d.Err("backoff needs <base> <rate> <cap>, e.g. backoff 3m 1.4 60m")
			}
			b := new(BackoffConfig)
			if b.Base, err = parseDuration(d, "backoff base", args[0]); err != nil {
				return err
			}
			if b.Rate, err = strconv.ParseFloat(args[1], 64); err != nil || b.Rate < 1 {
				return d.Errf("backoff rate %q must be a number ≥ 1", args[1])
			}
			if b.Cap, err = parseDuration(d, "backoff cap", args[2]); err != nil {
				return err
			}
			c.Backoff = b
		case "max_age":
			c.MaxAge, err = oneDuration(d)
		case "request_timeout":
			c.RequestTimeout, err = oneDuration(d)
		case "skip_on_failure":
			// No providers means none skip: every mailbox is strict. An
			// empty list, not nil, so the JSON keeps [] and does not fall
			// back to the default list.
			providers := d.RemainingArgs()
			if providers == nil {
				providers = []string{}
			}
			if err := checkSkipOnFailure(providers); err != nil {
				return d.Err(err.Error())
			}
			c.SkipOnFailure = &providers
		case "region_breaker":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Err("region_breaker needs <failures> <probe_interval>, e.g. region_breaker 5 10s")
			}
			b := new(BreakerConfig)
			if b.Failures, err = strconv.Atoi(args[0]); err != nil || b.Failures <= 0 {
				return d.Errf("region_breaker failures %q must be a positive integer", args[0])
			}
			if b.ProbeInterval, err = parseDuration(d, "region_breaker probe_interval", args[1]); err != nil {
				return err
			}
			c.RegionBreaker = b
		case "lease":
			c.Lease, err = oneDuration(d)
		case "dead_letter_retention":
			c.DeadLetterRetention, err = oneDuration(d)
		case "callback_hosts":
			// May be repeated; the entries add up.
			hosts := d.RemainingArgs()
			if len(hosts) == 0 {
				return d.Err("callback_hosts needs at least one host or host:port, e.g. callback_hosts chat.example.com:443")
			}
			for _, h := range hosts {
				if err := drain.CheckCallbackHost(h); err != nil {
					return d.Errf("%v", err)
				}
			}
			c.CallbackHosts = append(c.CallbackHosts, hosts...)
		default:
			return d.Errf("unrecognized drainer option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func oneDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	opt := d.Val()
	var v string
	if !d.AllArgs(&v) {
		return 0, d.ArgErr()
	}
	return parseDuration(d, opt, v)
}

func parseDuration(d *caddyfile.Dispenser, what, v string) (caddy.Duration, error) {
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("%s: bad duration %q (use Caddy durations such as 500ms, 30s, 3m, 72h)", what, v)
	}
	if dur <= 0 {
		return 0, d.Errf("%s: duration %q must be positive", what, v)
	}
	return caddy.Duration(dur), nil
}

func onePositiveInt(d *caddyfile.Dispenser) (int, error) {
	opt := d.Val()
	var v string
	if !d.AllArgs(&v) {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, d.Errf("%s: %q must be a positive integer", opt, v)
	}
	return n, nil
}

func boolPtr(b bool) *bool { return &b }

var _ caddyfile.Unmarshaler = (*App)(nil)
