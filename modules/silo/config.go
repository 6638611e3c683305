package silo

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/drain"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
)

// Storage engines.
const (
	EngineSQLite   = "sqlite"
	EnginePostgres = "postgres"
)

// defaultURLPrefix is Sentry's SaaS system.url-prefix.
const defaultURLPrefix = "https://sentry.io"

// Directory cache lifetimes [30s 5s].
const (
	defaultCacheTTL    = 30 * time.Second
	defaultNegativeTTL = 5 * time.Second
)

// DefaultSQLitePath is the embedded database file under Caddy's data
// directory.
func DefaultSQLitePath() string {
	return filepath.Join(caddy.AppDataDir(), "sentry_silo", "silo.db")
}

// resolve fills defaults, resolves {env.*}/{file.*} placeholders in the
// values that may hold secrets, and checks everything, so that a JSON
// config gets the same errors as a Caddyfile one. Each error names the
// offending value.
func (a *App) resolve() error {
	secret := ResolveSecret

	switch a.Mode {
	case "":
		a.Mode = ModeControl
	case ModeControl, ModeMonolith:
	default:
		return fmt.Errorf("mode %q: must be control or monolith", a.Mode)
	}

	// Regions.
	if len(a.Regions) == 0 && a.Mode == ModeControl {
		return errors.New("no region configured: add at least one `region <name> <address>` line to the sentry_silo global option")
	}
	a.regions = make(map[string]*Region, len(a.Regions))
	for i, rc := range a.Regions {
		if rc.Name == "" {
			return fmt.Errorf("regions[%d]: empty name", i)
		}
		if _, dup := a.regions[rc.Name]; dup {
			return fmt.Errorf("region %q is defined twice", rc.Name)
		}
		addr, err := parseBaseURL(rc.Address)
		if err != nil {
			return fmt.Errorf("region %s: address %q: %v", rc.Name, rc.Address, err)
		}
		r := &Region{Name: rc.Name, Address: addr, Gateway: addr}
		if rc.GatewayAddress != "" {
			if r.Gateway, err = parseBaseURL(rc.GatewayAddress); err != nil {
				return fmt.Errorf("region %s: gateway_address %q: %v", rc.Name, rc.GatewayAddress, err)
			}
		}
		a.regions[rc.Name] = r
	}
	a.names = sortedNames(a.regions)
	if a.DefaultRegion == "" && len(a.Regions) > 0 {
		a.DefaultRegion = a.Regions[0].Name
	}
	if a.DefaultRegion != "" {
		if _, ok := a.regions[a.DefaultRegion]; !ok {
			return fmt.Errorf("default_region %q is not a configured region (configured: %s)", a.DefaultRegion, strings.Join(a.names, ", "))
		}
	}

	if a.URLPrefix == "" {
		a.URLPrefix = defaultURLPrefix
	}
	u, err := parseBaseURL(a.URLPrefix)
	if err != nil {
		return fmt.Errorf("url_prefix %q: %v", a.URLPrefix, err)
	}
	a.urlPrefix = u

	if a.secret, err = secret("subnet_secret", a.SubnetSecret); err != nil {
		return err
	}

	// Static organizations.
	ids := map[int64]bool{}
	slugs := map[string]bool{}
	for _, o := range a.Organizations {
		line := fmt.Sprintf("organization %d %s %s", o.ID, o.Slug, o.Region)
		switch {
		case o.ID <= 0:
			return fmt.Errorf("%s: id must be a positive integer", line)
		case o.Slug == "":
			return fmt.Errorf("%s: empty slug", line)
		case ids[o.ID]:
			return fmt.Errorf("%s: organization id %d is listed twice", line, o.ID)
		case slugs[o.Slug]:
			return fmt.Errorf("%s: organization slug %q is listed twice", line, o.Slug)
		}
		if _, ok := a.regions[o.Region]; !ok {
			return fmt.Errorf("%s: region %q is not a configured region (configured: %s)", line, o.Region, strings.Join(a.names, ", "))
		}
		ids[o.ID], slugs[o.Slug] = true, true
	}

	if err := a.checkIntegrations(); err != nil {
		return err
	}

	if a.DirectoryCache == nil {
		a.DirectoryCache = new(DirectoryCacheConfig)
	}
	if a.DirectoryCache.TTL < 0 || a.DirectoryCache.NegativeTTL < 0 {
		return errors.New("directory_cache: durations must not be negative")
	}
	if a.DirectoryCache.TTL == 0 {
		a.DirectoryCache.TTL = caddy.Duration(defaultCacheTTL)
	}
	if a.DirectoryCache.NegativeTTL == 0 {
		a.DirectoryCache.NegativeTTL = caddy.Duration(defaultNegativeTTL)
	}

	// Storage.
	if a.Storage == nil {
		a.Storage = &StorageConfig{Engine: EngineSQLite}
	}
	switch a.Storage.Engine {
	case EngineSQLite:
		if a.Storage.DSN != "" {
			return errors.New("storage sqlite takes a path, not a dsn")
		}
		if a.storagePath, err = secret("storage sqlite path", a.Storage.Path); err != nil {
			return err
		}
		if a.storagePath == "" {
			a.storagePath = DefaultSQLitePath()
		}
	case EnginePostgres:
		if a.Storage.DSN == "" {
			return errors.New("storage postgres needs a dsn, e.g. storage postgres {env.SILO_DATABASE_URL}")
		}
		if a.storageDSN, err = secret("storage postgres dsn", a.Storage.DSN); err != nil {
			return err
		}
	default:
		return fmt.Errorf("storage engine %q: use sqlite or postgres", a.Storage.Engine)
	}
	if a.directoryDSN, err = secret("directory_dsn", a.DirectoryDSN); err != nil {
		return err
	}
	if a.Migrate == nil {
		a.Migrate = boolPtr(true)
	}

	if a.Drainer == nil {
		a.Drainer = new(DrainerConfig)
	}
	tuned := a.Drainer.options() // before the defaults fill them in
	if err := a.Drainer.resolve(); err != nil {
		return err
	}
	// Not errors: `off` on some instances of a shared config, and the
	// monolith mode of a multi-region Caddyfile, are legitimate.
	if a.logger != nil && len(tuned) > 0 && (a.Drainer.Off || !a.Control()) {
		why := "the drainer is off on this instance"
		if !a.Control() {
			why = "the mode is monolith, where the drainer does not run"
		}
		a.logger.Warn("sentry_silo: "+why+", so these drainer options do nothing: "+strings.Join(tuned, ", "),
			zap.Strings("unused_options", tuned))
	}
	return nil
}

// options names the drainer options that are set, `off` aside.
func (c *DrainerConfig) options() []string {
	var out []string
	for _, o := range []struct {
		name string
		set  bool
	}{
		{"poll_interval", c.PollInterval != 0},
		{"workers", c.Workers != 0},
		{"claim_size", c.ClaimSize != 0},
		{"max_attempts", c.MaxAttempts != 0},
		{"backoff", c.Backoff != nil},
		{"max_age", c.MaxAge != 0},
		{"request_timeout", c.RequestTimeout != 0},
		{"skip_on_failure", c.SkipOnFailure != nil},
		{"region_breaker", c.RegionBreaker != nil},
		{"lease", c.Lease != 0},
		{"dead_letter_retention", c.DeadLetterRetention != 0},
	} {
		if o.set {
			out = append(out, o.name)
		}
	}
	return out
}

// checkSkipOnFailure refuses provider names that no stored webhook has:
// a misspelt name would leave that provider's mailboxes strict.
func checkSkipOnFailure(providers []string) error {
	for i, p := range providers {
		if err := webhooks.CheckStored(p); err != nil {
			return fmt.Errorf("drainer skip_on_failure %s: %w", p, err)
		}
		if slices.Contains(providers[:i], p) {
			return fmt.Errorf("drainer skip_on_failure: %s is given twice", p)
		}
	}
	return nil
}

// checkIntegrations refuses static integrations that could never be read
// or that contradict each other.
func (a *App) checkIntegrations() error {
	ids := map[int64]bool{}
	keys := map[string]bool{}
	for _, in := range a.Integrations {
		line := fmt.Sprintf("integration %d %s %s", in.ID, in.Provider, in.ExternalID)
		switch {
		case in.ID <= 0:
			return fmt.Errorf("%s: id must be a positive integer", line)
		case !webhooks.ReadsIntegrations(in.Provider):
			return fmt.Errorf("%s: provider %q: capture reads the integrations of %s only", line, in.Provider, strings.Join(webhooks.IntegrationProviders(), ", "))
		case in.ExternalID == "":
			return fmt.Errorf("%s: empty external id", line)
		case len(in.Organizations) == 0:
			return fmt.Errorf("%s: name at least one organization id it is installed in", line)
		case ids[in.ID]:
			return fmt.Errorf("%s: integration id %d is listed twice", line, in.ID)
		case keys[in.Provider+"\x00"+in.ExternalID]:
			return fmt.Errorf("%s: %s integration %q is listed twice", line, in.Provider, in.ExternalID)
		}
		orgs := map[int64]bool{}
		for _, org := range in.Organizations {
			if org <= 0 {
				return fmt.Errorf("%s: organization id %d must be a positive integer", line, org)
			}
			if orgs[org] {
				return fmt.Errorf("%s: organization %d is listed twice", line, org)
			}
			orgs[org] = true
		}
		ids[in.ID], keys[in.Provider+"\x00"+in.ExternalID] = true, true
	}
	return nil
}

func (c *DrainerConfig) resolve() error {
	setDur := func(p *caddy.Duration, def time.Duration, name string) error {
		if *p < 0 {
			return fmt.Errorf("drainer %s: must not be negative", name)
		}
		if *p == 0 {
			*p = caddy.Duration(def)
		}
		return nil
	}
	setInt := func(p *int, def int, name string) error {
		if *p < 0 {
			return fmt.Errorf("drainer %s: must not be negative", name)
		}
		if *p == 0 {
			*p = def
		}
		return nil
	}
	if c.Backoff == nil {
		c.Backoff = new(BackoffConfig)
	}
	if c.RegionBreaker == nil {
		c.RegionBreaker = new(BreakerConfig)
	}
	if c.Backoff.Rate == 0 {
		c.Backoff.Rate = drain.DefaultBackoffRate
	}
	if c.Backoff.Rate < 1 {
		return fmt.Errorf("drainer backoff rate %v: must be ≥ 1", c.Backoff.Rate)
	}
	for _, e := range []error{
		setDur(&c.PollInterval, drain.DefaultPollInterval, "poll_interval"),
		setInt(&c.Workers, drain.DefaultWorkers, "workers"),
		setInt(&c.ClaimSize, drain.DefaultClaimSize, "claim_size"),
		setInt(&c.MaxAttempts, drain.DefaultMaxAttempts, "max_attempts"),
		setDur(&c.Backoff.Base, drain.DefaultBackoffBase, "backoff base"),
		setDur(&c.Backoff.Cap, drain.DefaultBackoffCap, "backoff cap"),
		setDur(&c.MaxAge, drain.DefaultMaxAge, "max_age"),
		setDur(&c.RequestTimeout, drain.DefaultRequestTimeout, "request_timeout"),
		setInt(&c.RegionBreaker.Failures, drain.DefaultBreakerFailures, "region_breaker failures"),
		setDur(&c.RegionBreaker.ProbeInterval, drain.DefaultBreakerProbeInterval, "region_breaker probe_interval"),
		setDur(&c.Lease, drain.DefaultLease, "lease"),
		setDur(&c.DeadLetterRetention, drain.DefaultDeadLetterRetention, "dead_letter_retention"),
	} {
		if e != nil {
			return e
		}
	}
	if c.Backoff.Cap < c.Backoff.Base {
		return fmt.Errorf("drainer backoff: cap %s is below base %s", time.Duration(c.Backoff.Cap), time.Duration(c.Backoff.Base))
	}
	if c.SkipOnFailure == nil {
		def := drain.DefaultSkipOnFailure()
		c.SkipOnFailure = &def
	}
	for _, h := range c.CallbackHosts {
		if err := drain.CheckCallbackHost(h); err != nil {
			return fmt.Errorf("drainer %v", err)
		}
	}
	if err := checkSkipOnFailure(*c.SkipOnFailure); err != nil {
		return err
	}
	// A lease shorter than a delivery could lapse while the delivery runs,
	// letting a second drainer into the mailbox.
	if time.Duration(c.Lease) < 2*time.Second {
		return fmt.Errorf("drainer lease %s: must be at least 2s", time.Duration(c.Lease))
	}
	return nil
}

// ResolveSecret resolves the {env.*} and {file.*} placeholders of a
// configured value that may hold a secret. A value that was set but
// resolves to nothing is an error, not a silent "off": a signing secret
// whose variable is missing would otherwise turn its check off. The
// error names the option and the placeholder, never a value. An unset
// option ("") stays "".
func ResolveSecret(what, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	out, err := caddy.NewReplacer().ReplaceOrErr(v, true, true)
	if err != nil {
		return "", fmt.Errorf("%s: %v (is the variable set, or the file readable?)", what, err)
	}
	if strings.TrimSpace(out) == "" {
		return "", fmt.Errorf("%s is set but empty", what)
	}
	return out, nil
}

// parseBaseURL accepts an absolute http(s) URL with a host and no query or
// fragment; a trailing slash is dropped so paths can be appended.
func parseBaseURL(s string) (*url.URL, error) {
	if err := checkURL(s); err != nil {
		return nil, err
	}
	u, _ := url.Parse(s)
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// checkURL explains what is wrong with an address, for Caddyfile and JSON
// errors alike. Placeholders are not allowed in addresses.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("must start with http:// or https://")
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("has no host")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must not have a query or fragment")
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// config is the resolved drainer block for the drain package. Each app gets
// its own lease owner: during a reload the old and the new drainer run side
// by side and must not share leases.
func (c *DrainerConfig) config() drain.Config {
	return drain.Config{
		Owner:                leaseOwner(),
		PollInterval:         time.Duration(c.PollInterval),
		Workers:              c.Workers,
		ClaimSize:            c.ClaimSize,
		MaxAttempts:          c.MaxAttempts,
		BackoffBase:          time.Duration(c.Backoff.Base),
		BackoffRate:          c.Backoff.Rate,
		BackoffCap:           time.Duration(c.Backoff.Cap),
		MaxAge:               time.Duration(c.MaxAge),
		RequestTimeout:       time.Duration(c.RequestTimeout),
		SkipOnFailure:        *c.SkipOnFailure,
		BreakerFailures:      c.RegionBreaker.Failures,
		BreakerProbeInterval: time.Duration(c.RegionBreaker.ProbeInterval),
		Lease:                time.Duration(c.Lease),
		DeadLetterRetention:  time.Duration(c.DeadLetterRetention),
		CallbackHosts:        c.CallbackHosts,
	}
}

// leaseOwner names a drainer in mailbox leases: host and pid tell an
// operator which instance holds a mailbox, the random part tells apart the
// two configs of one process during a reload.
func leaseOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
