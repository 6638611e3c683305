package silo

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
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
//		listen_dsn <dsn>
//		migrate on|off
//		region <name> <address> {
//			gateway_address <url>
//		}
//		default_region <name>
//		url_prefix <url>
//		subnet_secret <secret>
//		directory_cache <ttl> [<negative_ttl>]
//		directory_stale_if_error <d>|off
//		directory_snapshot <path>|off
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

// UnmarshalCaddyfile fills the app from the sentry_silo block, one small
// function per option (siloOptions). It checks the cross references
// (regions named by default_region and organization lines) once the whole
// block is read, so that the error points at the line that names the
// unknown region.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	p := &siloParse{regions: map[string]bool{}}
	given := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		parse, ok := siloOptions[name]
		if !ok {
			return d.Errf("unrecognized sentry_silo option %q", name)
		}
		if given[name] && !repeatableOptions[name] {
			// A second line would silently replace the first.
			return d.Errf("%s is set twice", name)
		}
		given[name] = true
		if err := parse(d, a, p); err != nil {
			return err
		}
	}
	for _, r := range p.refs {
		if !p.regions[r.name] {
			return fmt.Errorf("%s is not a configured region (configured: %s), at %s:%d", r.what, strings.Join(sortedKeys(p.regions), ", "), r.file, r.line)
		}
	}
	return nil
}

// siloParse is what the option parsers share while the block is read: a
// region may be named before it is defined, so the references are kept,
// with the position of the line that names them, and checked at the end.
type siloParse struct {
	regions map[string]bool
	refs    []regionRef
}

type regionRef struct {
	name, what, file string
	line             int
}

// ref records a region named by the current line.
func (p *siloParse) ref(d *caddyfile.Dispenser, name, what string) {
	p.refs = append(p.refs, regionRef{name, what, d.File(), d.Line()})
}

// siloOptionParser reads one option (the dispenser is on its name) into a.
type siloOptionParser func(d *caddyfile.Dispenser, a *App, p *siloParse) error

// siloOptions are the options of the sentry_silo block.
var siloOptions map[string]siloOptionParser

func init() {
	siloOptions = map[string]siloOptionParser{
		"mode":                     parseMode,
		"storage":                  parseStorage,
		"directory_dsn":            oneString(func(a *App) *string { return &a.DirectoryDSN }),
		"listen_dsn":               oneString(func(a *App) *string { return &a.ListenDSN }),
		"migrate":                  parseMigrate,
		"region":                   parseRegion,
		"default_region":           parseDefaultRegion,
		"url_prefix":               parseURLPrefix,
		"subnet_secret":            oneString(func(a *App) *string { return &a.SubnetSecret }),
		"directory_cache":          parseDirectoryCache,
		"organization":             parseOrganization,
		"integration":              parseIntegration,
		"organization_integration": parseOrganizationIntegration,
		"drainer":                  parseDrainer,

		// directory_fallback.go
		"directory_stale_if_error": parseDirectoryStaleIfError,
		"directory_snapshot":       parseDirectorySnapshot,
	}
}

// repeatableOptions may be given on several lines, which add up.
var repeatableOptions = map[string]bool{"region": true, "organization": true, "integration": true, "organization_integration": true}

// oneString reads an option with exactly one argument into a field.
func oneString(field func(a *App) *string) siloOptionParser {
	return func(d *caddyfile.Dispenser, a *App, _ *siloParse) error {
		if !d.AllArgs(field(a)) {
			return d.ArgErr()
		}
		return nil
	}
}

func parseMode(d *caddyfile.Dispenser, a *App, _ *siloParse) error {
	var mode string
	if !d.AllArgs(&mode) {
		return d.ArgErr()
	}
	if mode != ModeControl && mode != ModeMonolith {
		return d.Errf("mode must be control or monolith, not %q", mode)
	}
	a.Mode = mode
	return nil
}

func parseStorage(d *caddyfile.Dispenser, a *App, _ *siloParse) error {
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
	return nil
}

func parseMigrate(d *caddyfile.Dispenser, a *App, _ *siloParse) error {
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
	return nil
}

func parseRegion(d *caddyfile.Dispenser, a *App, p *siloParse) error {
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
	if p.regions[rc.Name] {
		return d.Errf("region %q is defined twice", rc.Name)
	}
	p.regions[rc.Name] = true
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
	return nil
}

func parseDefaultRegion(d *caddyfile.Dispenser, a *App, p *siloParse) error {
	if !d.AllArgs(&a.DefaultRegion) {
		return d.ArgErr()
	}
	p.ref(d, a.DefaultRegion, fmt.Sprintf("default_region %q", a.DefaultRegion))
	return nil
}

func parseURLPrefix(d *caddyfile.Dispenser, a *App, _ *siloParse) error {
	if !d.AllArgs(&a.URLPrefix) {
		return d.ArgErr()
	}
	if err := checkURL(a.URLPrefix); err != nil {
		return d.Errf("url_prefix %q: %v", a.URLPrefix, err)
	}
	return nil
}

func parseDirectoryCache(d *caddyfile.Dispenser, a *App, _ *siloParse) error {
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
	return nil
}

func parseOrganization(d *caddyfile.Dispenser, a *App, p *siloParse) error {
	var id, slug, region string
	if !d.AllArgs(&id, &slug, &region) {
		return d.Err("organization needs <id> <slug> <region>")
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 {
		return d.Errf("organization %s %s: id must be a positive integer", id, slug)
	}
	a.Organizations = append(a.Organizations, StaticOrganization{ID: n, Slug: slug, Region: region})
	p.ref(d, region, fmt.Sprintf("organization %s %s: region %q", id, slug, region))
	return nil
}

func parseIntegration(d *caddyfile.Dispenser, a *App, _ *siloParse) error {
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
	if err := checkIntegrations(a.Integrations); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

func parseDrainer(d *caddyfile.Dispenser, a *App, _ *siloParse) error {
	a.Drainer = new(DrainerConfig)
	return a.Drainer.unmarshalCaddyfile(d)
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
