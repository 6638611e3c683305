package silo

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
)

// Storage engines.
const (
	EngineSQLite   = "sqlite"
	EnginePostgres = "postgres"
)

// defaultURLPrefix is Sentry's SaaS system.url-prefix.
const defaultURLPrefix = "https://sentry.io"

// DefaultSQLitePath is the embedded database file under Caddy's data
// directory.
func DefaultSQLitePath() string {
	return filepath.Join(caddy.AppDataDir(), "sentry_silo", "silo.db")
}

// resolve fills defaults, resolves {env.*}/{file.*} placeholders in the
// values that may hold secrets, and checks everything, so that a JSON
// config gets the same errors as a Caddyfile one. Each error names the
// offending value. Each step is one concern of the config.
func (a *App) resolve() error {
	var err error
	if a.Mode, err = resolveMode(a.Mode); err != nil {
		return err
	}
	if a.regions, a.names, err = resolveRegions(a.Regions, a.Mode == ModeControl); err != nil {
		return err
	}
	if a.DefaultRegion == "" && len(a.Regions) > 0 {
		a.DefaultRegion = a.Regions[0].Name
	}
	if err := checkRegionName(a.regions, a.names, a.DefaultRegion, fmt.Sprintf("default_region %q", a.DefaultRegion)); err != nil {
		return err
	}
	if a.URLPrefix == "" {
		a.URLPrefix = defaultURLPrefix
	}
	if a.urlPrefix, err = parseBaseURL(a.URLPrefix); err != nil {
		return fmt.Errorf("url_prefix %q: %v", a.URLPrefix, err)
	}
	if a.secret, err = ResolveSecret("subnet_secret", a.SubnetSecret); err != nil {
		return err
	}
	if err := checkOrganizations(a.Organizations, a.regions, a.names); err != nil {
		return err
	}
	if err := checkIntegrations(a.Integrations); err != nil {
		return err
	}
	if err := checkOrganizationIntegrations(a.OrganizationIntegrations, a.Integrations); err != nil {
		return err
	}
	if a.DirectoryCache, err = resolveDirectoryCache(a.DirectoryCache); err != nil {
		return err
	}
	if a.DirectoryStaleIfError, a.fallback, err = resolveDirectoryFallback(a.DirectoryStaleIfError, a.DirectorySnapshot); err != nil {
		return err
	}
	if a.Storage == nil {
		a.Storage = &StorageConfig{Engine: EngineSQLite}
	}
	if a.storagePath, a.storageDSN, err = a.Storage.resolve(); err != nil {
		return err
	}
	if a.directoryDSN, err = ResolveSecret("directory_dsn", a.DirectoryDSN); err != nil {
		return err
	}
	if a.listenDSN, err = resolveListenDSN(a.Storage.Engine, a.ListenDSN); err != nil {
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
	warnUnusedDrainer(a.logger, tuned, a.Drainer.Off, a.Control())
	return nil
}

func resolveMode(mode string) (string, error) {
	switch mode {
	case "":
		return ModeControl, nil
	case ModeControl, ModeMonolith:
		return mode, nil
	}
	return "", fmt.Errorf("mode %q: must be control or monolith", mode)
}

// resolveRegions parses the region addresses; control mode needs one.
func resolveRegions(configs []RegionConfig, control bool) (map[string]*Region, []string, error) {
	if len(configs) == 0 && control {
		return nil, nil, errors.New("no region configured: add at least one `region <name> <address>` line to the sentry_silo global option")
	}
	regions := make(map[string]*Region, len(configs))
	for i, rc := range configs {
		if rc.Name == "" {
			return nil, nil, fmt.Errorf("regions[%d]: empty name", i)
		}
		if _, dup := regions[rc.Name]; dup {
			return nil, nil, fmt.Errorf("region %q is defined twice", rc.Name)
		}
		addr, err := parseBaseURL(rc.Address)
		if err != nil {
			return nil, nil, fmt.Errorf("region %s: address %q: %v", rc.Name, rc.Address, err)
		}
		r := &Region{Name: rc.Name, Address: addr, Gateway: addr}
		if rc.GatewayAddress != "" {
			if r.Gateway, err = parseBaseURL(rc.GatewayAddress); err != nil {
				return nil, nil, fmt.Errorf("region %s: gateway_address %q: %v", rc.Name, rc.GatewayAddress, err)
			}
		}
		regions[rc.Name] = r
	}
	return regions, sortedNames(regions), nil
}

// checkRegionName refuses a name ("" is fine) that is not a configured
// region; what says which option named it.
func checkRegionName(regions map[string]*Region, names []string, name, what string) error {
	if name == "" {
		return nil
	}
	if _, ok := regions[name]; !ok {
		return fmt.Errorf("%s is not a configured region (configured: %s)", what, strings.Join(names, ", "))
	}
	return nil
}

// checkOrganizations refuses static organizations that could not route or
// that contradict each other.
func checkOrganizations(orgs []StaticOrganization, regions map[string]*Region, names []string) error {
	ids := map[int64]bool{}
	slugs := map[string]bool{}
	for _, o := range orgs {
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
		if err := checkRegionName(regions, names, o.Region, fmt.Sprintf("%s: region %q", line, o.Region)); err != nil {
			return err
		}
		ids[o.ID], slugs[o.Slug] = true, true
	}
	return nil
}

// checkIntegrations refuses static integrations that could never be read
// or that contradict each other.
func checkIntegrations(list []StaticIntegration) error {
	ids := map[int64]bool{}
	keys := map[string]bool{}
	for _, in := range list {
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

// resolveDirectoryCache fills in the directory's own defaults, so that the
// adapted and provisioned config shows the lifetimes in use.
func resolveDirectoryCache(c *DirectoryCacheConfig) (*DirectoryCacheConfig, error) {
	if c == nil {
		c = new(DirectoryCacheConfig)
	}
	if c.TTL < 0 || c.NegativeTTL < 0 {
		return nil, errors.New("directory_cache: durations must not be negative")
	}
	if c.TTL == 0 {
		c.TTL = caddy.Duration(directory.DefaultTTL)
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = caddy.Duration(directory.DefaultNegativeTTL)
	}
	return c, nil
}

// resolve checks the storage block and resolves its placeholders: the
// SQLite file (path) or the PostgreSQL DSN.
func (s *StorageConfig) resolve() (path, dsn string, err error) {
	switch s.Engine {
	case EngineSQLite:
		if s.DSN != "" {
			return "", "", errors.New("storage sqlite takes a path, not a dsn")
		}
		if path, err = ResolveSecret("storage sqlite path", s.Path); err != nil {
			return "", "", err
		}
		if path == "" {
			path = DefaultSQLitePath()
		}
		return path, "", nil
	case EnginePostgres:
		if s.DSN == "" {
			return "", "", errors.New("storage postgres needs a dsn, e.g. storage postgres {env.SILO_DATABASE_URL}")
		}
		dsn, err = ResolveSecret("storage postgres dsn", s.DSN)
		return "", dsn, err
	}
	return "", "", fmt.Errorf("storage engine %q: use sqlite or postgres", s.Engine)
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
