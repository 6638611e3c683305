// Package silo is the sentry_silo Caddy app: the configuration every
// caddy-silo handler shares (mode, regions, storage, directory, subnet
// secret) and the mailbox drainer that delivers captured webhooks.
package silo

import (
	"context"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/credentials"
	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/drain"
	"github.com/sentrysilo/caddy-silo/modules/internal/mailbox"
)

func init() {
	caddy.RegisterModule(App{})
}

// drainMetrics are the drainer's collectors for the whole process: each
// config builds a new drainer, and counters that restarted from 0 at every
// reload would break rate() on every dashboard.
var drainMetrics = drain.NewMetrics()

// Modes of operation (Sentry's SiloMode).
const (
	ModeControl  = "control"
	ModeMonolith = "monolith"
)

// App is the sentry_silo app.
type App struct {
	// Mode is "control" (default) or "monolith". In monolith mode every
	// handler passes every request on and the drainer does not run.
	Mode string `json:"mode,omitempty"`
	// Storage is where captured webhooks are kept [embedded SQLite under
	// Caddy's data directory].
	Storage *StorageConfig `json:"storage,omitempty"`
	// DirectoryDSN is a pgx DSN of the Sentry control database holding the
	// directory tables [the storage database].
	DirectoryDSN string `json:"directory_dsn,omitempty"`
	// ListenDSN is a pgx DSN of the storage database for the drainer's
	// LISTEN session, when storage goes through a pooler in transaction
	// mode (PgBouncer), which cannot hold one: a direct connection
	// [the storage DSN]. Accepts {env.*}/{file.*}.
	ListenDSN string `json:"listen_dsn,omitempty"`
	// Migrate creates our tables at start, and the missing directory
	// tables when the directory lives in the storage database (no
	// directory_dsn) [true]. Tables are never created in directory_dsn's
	// database: that is Sentry's control database, whose schema belongs
	// to Sentry's migrations.
	Migrate *bool `json:"migrate,omitempty"`
	// Regions are the regions (cells), one per name.
	Regions []RegionConfig `json:"regions,omitempty"`
	// DefaultRegion receives pinned and legacy routes
	// (SENTRY_MONOLITH_REGION) [the first region].
	DefaultRegion string `json:"default_region,omitempty"`
	// URLPrefix is Sentry's system.url-prefix, used for DSN routing
	// [https://sentry.io].
	URLPrefix string `json:"url_prefix,omitempty"`
	// SubnetSecret is SENTRY_SUBNET_SECRET; accepts {env.*}/{file.*}.
	SubnetSecret string `json:"subnet_secret,omitempty"`
	// DirectoryCache sets the directory cache lifetimes [30s, 5s].
	DirectoryCache *DirectoryCacheConfig `json:"directory_cache,omitempty"`
	// DirectoryStaleIfError is how long past its TTL the last good answer
	// of a lookup is still served while the directory's database fails
	// or times out [24h]; 0 turns it off (directory_fallback.go).
	DirectoryStaleIfError *caddy.Duration `json:"directory_stale_if_error,omitempty"`
	// DirectorySnapshot is the file the last good answers are saved to
	// and restored from at start, or "off"
	// [<data dir>/sentry_silo/directory-snapshot.gob].
	DirectorySnapshot string `json:"directory_snapshot,omitempty"`
	// Organizations are static directory entries, consulted first.
	Organizations []StaticOrganization `json:"organizations,omitempty"`
	// Integrations are static integrations, consulted before the
	// directory's database: which organizations an integration is
	// installed in, so that capture can route its webhooks without a
	// Sentry control database (demos, tests, small setups).
	Integrations []StaticIntegration `json:"integrations,omitempty"`
	// OrganizationIntegrations give ids to installations of static
	// integrations, so that the credential proxy can find them too
	// (static_orginteg.go).
	OrganizationIntegrations []StaticOrganizationIntegration `json:"organization_integrations,omitempty"`
	// Drainer configures delivery of captured webhooks.
	Drainer *DrainerConfig `json:"drainer,omitempty"`

	ctx          caddy.Context
	logger       *zap.Logger
	regions      map[string]*Region
	names        []string
	urlPrefix    *url.URL
	secret       string
	storagePath  string
	storageDSN   string
	directoryDSN string
	listenDSN    string
	poolKeys     []string // UsagePool references this app holds
	shared       *sharedStorage
	dir          *directory.Directory
	payloads     payloadParts   // the storage database, by consumer
	directoryDB  directoryParts // the directory tables' database
	fallback     directoryFallback
	tablesFound  *atomic.Bool // the directory tables check found them all (readiness)

	drainer  *drain.Drainer // nil when this instance does not deliver
	notifier *notifier      // nil when the store cannot wake other instances

	cancel context.CancelFunc
	done   chan struct{}
}

// StorageConfig selects the storage engine.
type StorageConfig struct {
	// Engine is "sqlite" or "postgres".
	Engine string `json:"engine"`
	// Path is the SQLite file (sqlite only).
	Path string `json:"path,omitempty"`
	// DSN is a pgx DSN (postgres only); accepts {env.*}/{file.*}.
	DSN string `json:"dsn,omitempty"`
}

// RegionConfig is one region (cell).
type RegionConfig struct {
	Name           string `json:"name"`
	Address        string `json:"address"`
	GatewayAddress string `json:"gateway_address,omitempty"`
}

// DirectoryCacheConfig sets the directory cache lifetimes.
type DirectoryCacheConfig struct {
	TTL         caddy.Duration `json:"ttl,omitempty"`
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`
}

// StaticOrganization is a directory entry from the config.
type StaticOrganization struct {
	ID     int64  `json:"id"`
	Slug   string `json:"slug"`
	Region string `json:"region"`
}

// StaticIntegration is a directory entry from the config: an integration
// (a row of sentry_integration, active) installed in organizations (rows
// of sentry_organizationintegration). The regions are those of the
// organizations, static or in the database.
type StaticIntegration struct {
	ID            int64   `json:"id"`
	Provider      string  `json:"provider"`
	ExternalID    string  `json:"external_id"`
	Organizations []int64 `json:"organizations"`
}

// DrainerConfig configures the mailbox drainer. Zero values mean defaults.
type DrainerConfig struct {
	Off                 bool           `json:"off,omitempty"`
	PollInterval        caddy.Duration `json:"poll_interval,omitempty"`
	Workers             int            `json:"workers,omitempty"`
	ClaimSize           int            `json:"claim_size,omitempty"`
	MaxAttempts         int            `json:"max_attempts,omitempty"`
	Backoff             *BackoffConfig `json:"backoff,omitempty"`
	MaxAge              caddy.Duration `json:"max_age,omitempty"`
	RequestTimeout      caddy.Duration `json:"request_timeout,omitempty"`
	SkipOnFailure       *[]string      `json:"skip_on_failure,omitempty"`
	RegionBreaker       *BreakerConfig `json:"region_breaker,omitempty"`
	Lease               caddy.Duration `json:"lease,omitempty"`
	DeadLetterRetention caddy.Duration `json:"dead_letter_retention,omitempty"`
	// DeliveredRetention keeps delivered payloads that long in the
	// delivered history (the admin API lists and replays them); 0, the
	// default, deletes them on delivery.
	DeliveredRetention caddy.Duration `json:"delivered_retention,omitempty"`
	// CallbackHosts are more hosts a Slack or Discord response_url may
	// name, beyond Slack's and Discord's own: "host" (any port, public
	// addresses only) or "host:port" (that port, private and loopback
	// addresses too). See docs/sentry_silo.md.
	CallbackHosts []string `json:"callback_hosts,omitempty"`
}

// BackoffConfig is delay = min(base * rate^attempts, cap).
type BackoffConfig struct {
	Base caddy.Duration `json:"base,omitempty"`
	Rate float64        `json:"rate,omitempty"`
	Cap  caddy.Duration `json:"cap,omitempty"`
}

// BreakerConfig configures the drainer's region breaker.
type BreakerConfig struct {
	Failures      int            `json:"failures,omitempty"`
	ProbeInterval caddy.Duration `json:"probe_interval,omitempty"`
}

// Region is a provisioned region.
type Region struct {
	Name string
	// Address is where deliveries and credential-proxy answers go.
	Address *url.URL
	// Gateway is where gateway traffic goes: gateway_address when set,
	// else Address.
	Gateway *url.URL
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "sentry_silo", New: func() caddy.Module { return new(App) }}
}

// Control reports whether the edge functions run (mode control).
func (a *App) Control() bool { return a.Mode == "" || a.Mode == ModeControl }

// Region returns the region of that name.
func (a *App) Region(name string) (*Region, bool) {
	r, ok := a.regions[name]
	return r, ok
}

// RegionNames returns the configured region names, sorted.
func (a *App) RegionNames() []string { return a.names }

// DefaultRegionName returns the region for pinned and legacy routes.
func (a *App) DefaultRegionName() string { return a.DefaultRegion }

// URLPrefixURL returns the parsed url_prefix.
func (a *App) URLPrefixURL() *url.URL { return a.urlPrefix }

// Secret returns the resolved subnet secret ("" when unset).
func (a *App) Secret() string { return a.secret }

// Directory returns the cached directory.
func (a *App) Directory() *directory.Directory { return a.dir }

// Insert is the group-commit insert into the storage database (nil
// without one): when it returns nil, every row is durable.
func (a *App) Insert() mailbox.InsertFunc { return a.payloads.insert }

// CredentialStore returns where tokens are read, locked and written back:
// the directory's database (Sentry's control database when directory_dsn
// is set, else the storage database), where Sentry's own code reads them.
func (a *App) CredentialStore() credentials.Store { return a.directoryDB.credentials }

// Wake tells the local drainer that these mailboxes have new payloads; other
// instances hear of them through the store (LISTEN/NOTIFY).
func (a *App) Wake(mailboxes ...string) {
	if a.drainer != nil {
		a.drainer.Wake(mailboxes...)
	}
	if a.notifier != nil {
		a.notifier.add(mailboxes)
	}
}

// Provision resolves and checks the config and acquires the storage. It is
// offline: the pgx pool connects lazily and nothing is started.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	if err := a.resolve(); err != nil {
		return err
	}
	if err := a.openStorage(); err != nil {
		return err
	}
	static := make([]directory.Organization, 0, len(a.Organizations))
	for _, o := range a.Organizations {
		static = append(static, directory.Organization{ID: o.ID, Slug: o.Slug, Region: o.Region, Status: directory.StatusActive})
	}
	integrations := make([]directory.Integration, 0, len(a.Integrations))
	for _, si := range a.Integrations {
		in := directory.Integration{ID: si.ID, Provider: si.Provider, ExternalID: si.ExternalID, Status: directory.StatusActive}
		for _, org := range si.Organizations {
			in.Organizations = append(in.Organizations, directory.OrganizationIntegration{
				ID: orgIntegrationID(a.OrganizationIntegrations, si.ID, org), OrganizationID: org, Status: directory.StatusActive})
		}
		integrations = append(integrations, in)
	}
	a.dir = directory.New(a.directoryDB.source, a.fallback.options(directory.Options{
		TTL:           time.Duration(a.DirectoryCache.TTL),
		NegativeTTL:   time.Duration(a.DirectoryCache.NegativeTTL),
		Organizations: static,
		Integrations:  integrations,
		// Room for every organization of a large installation: the
		// gateway's hit rate must not fall off at 100,000 orgs.
		MaxEntries: 1 << 18,
	}, a.directoryDB.tables.Where(), a.logger))
	a.fallback.restore(ctx, a.dir, a.logger)
	a.tablesFound = new(atomic.Bool)
	if a.payloads.notify != nil && a.Control() {
		a.notifier = newNotifier(a.payloads.notify, a.logger)
	}
	if a.Control() && !a.Drainer.Off {
		drainMetrics.Register(ctx.GetMetricsRegistry())
		a.drainer = drain.New(a.Drainer.config(leaseOwner()), a.payloads.drain, regionAddresses(a.regions),
			a.logger.Named("drainer"), drainMetrics)
	}
	return nil
}

// regionAddresses tells the drainer where it delivers a region's payloads.
func regionAddresses(regions map[string]*Region) func(name string) (*url.URL, bool) {
	return func(name string) (*url.URL, bool) {
		r, ok := regions[name]
		if !ok {
			return nil, false
		}
		return r.Address, true
	}
}

func sortedNames(m map[string]*Region) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// stopTimeout bounds Stop: it runs inside admin-API reloads, and a hung
// Stop would hang every later reload.
const stopTimeout = 10 * time.Second

// Start logs the mode and starts the background work (migrations, then the
// drainer) without waiting for the database: a database that is down at
// boot must not fail the boot or a reload.
func (a *App) Start() error {
	a.logger.Info("sentry_silo starting",
		zap.String("mode", a.Mode),
		zap.String("storage", a.Storage.Engine),
		zap.Strings("regions", a.names),
		zap.String("default_region", a.DefaultRegion),
		zap.Bool("drainer", a.drainer != nil))
	setActive(a)
	if !a.Control() {
		return nil
	}
	// The embedded database is a local file: migrate it before serving
	// (briefly bounded), so the first requests after a boot find their
	// tables. PostgreSQL is migrated in the background only.
	if a.Storage.Engine == EngineSQLite {
		a.migrateOnce(a.ctx, 5*time.Second)
	}
	runCtx, cancel := context.WithCancel(a.ctx)
	a.cancel = cancel
	a.done = make(chan struct{})
	go func() {
		defer close(a.done)
		var wg sync.WaitGroup
		if a.notifier != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a.notifier.run(runCtx)
			}()
		}
		a.run(runCtx)
		wg.Wait()
	}()
	return nil
}

// run migrates the storage, retrying with backoff until it works or the
// app stops, then drains mailboxes until the app stops. The directory
// tables are checked meanwhile, on their own.
func (a *App) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { a.checkDirectory(ctx) })
	wg.Go(func() { a.fallback.persist(ctx, a.dir, a.logger) })
	if *a.Migrate {
		backoff := 500 * time.Millisecond
		for {
			err := a.migrateOnce(ctx, time.Minute)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			a.logger.Error("migrating storage failed; retrying", zap.Error(err), zap.Duration("retry_in", backoff))
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
		}
	}
	if a.drainer != nil {
		a.drainer.Run(ctx)
	}
}

// migrateOnce runs the migrations unless they already succeeded on this
// database (reloads share it). Without directory_dsn the storage
// database is the directory's too, and its missing directory tables are
// created with ours.
func (a *App) migrateOnce(ctx context.Context, timeout time.Duration) error {
	if !*a.Migrate || a.shared.migrated.Load() {
		return nil
	}
	mctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := a.payloads.migrate(mctx); err != nil {
		return err
	}
	if a.directoryDSN == "" {
		if err := a.directoryDB.tables.MigrateDirectory(mctx); err != nil {
			return err
		}
	}
	a.shared.migrated.Store(true)
	return nil
}

// checkDirectory looks, once the directory's database answers, for the
// directory tables it lacks, and logs an error naming them and the
// database: without them the gateway, capture and the credential proxy
// cannot resolve anything, and the operator must be told where to look.
// It retries with backoff while the database cannot be reached.
func (a *App) checkDirectory(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for {
		if !*a.Migrate || a.directoryDSN != "" || a.shared.migrated.Load() {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			missing, err := a.directoryDB.tables.MissingDirectoryTables(cctx)
			cancel()
			if err == nil {
				a.tablesFound.Store(len(missing) == 0)
				if len(missing) > 0 {
					hint := "directory_dsn must name Sentry's control database; caddy-silo never creates tables there"
					if a.directoryDSN == "" {
						hint = "migrate is off: create them, or set directory_dsn to Sentry's control database"
					}
					a.logger.Error("directory tables missing: organizations, integrations and tokens cannot be resolved",
						zap.Strings("tables", missing), zap.String("database", a.directoryDB.tables.Where()), zap.String("fix", hint))
				}
				return
			}
			if ctx.Err() != nil {
				return
			}
			a.logger.Warn("checking the directory tables failed; retrying", zap.String("database", a.directoryDB.tables.Where()),
				zap.Error(err), zap.Duration("retry_in", backoff))
		}
		// Without directory_dsn the migrations create the tables: look
		// once they ran.
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// Stop stops the background work, waiting at most stopTimeout.
func (a *App) Stop() error {
	clearActive(a)
	if a.cancel == nil {
		return nil
	}
	a.cancel()
	select {
	case <-a.done:
	case <-time.After(stopTimeout):
		a.logger.Warn("sentry_silo background work did not stop in time; its leases will expire", zap.Duration("waited", stopTimeout))
	}
	return nil
}

// Cleanup releases the storage references taken in Provision. It is also
// called after a failed Provision, so it handles a half-built app.
func (a *App) Cleanup() error {
	if a.cancel != nil {
		a.cancel()
	}
	a.releaseStorage()
	return nil
}

var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
