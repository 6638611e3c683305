package directory

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Defaults of Options.
const (
	DefaultTTL          = 30 * time.Second
	DefaultNegativeTTL  = 5 * time.Second
	DefaultMaxEntries   = 1 << 16
	DefaultQueryTimeout = 5 * time.Second
	// DefaultStaleIfError covers an overnight control-database outage (a
	// failover, a maintenance window, a bad migration take minutes to
	// hours) while bounding how long an organization that moved region,
	// was renamed or deleted meanwhile can still be routed by its old
	// answer. Organizations move region only by an explicit relocation,
	// so a day-old answer is almost always still right; without one
	// every request fails with 503.
	DefaultStaleIfError = 24 * time.Hour
)

// Options configures a Directory.
type Options struct {
	// TTL is how long a found entry is served from memory [30s]. A
	// negative value disables caching of found entries.
	TTL time.Duration
	// NegativeTTL is how long a miss (ErrNotFound) is remembered [5s]. A
	// negative value disables negative caching. Other errors are never
	// cached.
	NegativeTTL time.Duration
	// Organizations are static entries from the Caddyfile; they are
	// consulted before the cache and the database.
	Organizations []Organization
	// Integrations are static integrations from the Caddyfile, consulted
	// before the cache and the database like Organizations. Each lists
	// its organizations (OrganizationID is enough); their regions come
	// from the organization lookup, static entries first. Status is
	// taken as given (0, active, for the Caddyfile's). An organization
	// integration with an ID is found by OrganizationIntegration too.
	Integrations []Integration
	// MaxEntries bounds each lookup kind's cache [65536], so a scan of
	// random slugs cannot grow memory without bound.
	MaxEntries int
	// QueryTimeout bounds one Source query [5s]. The query is shared by
	// every caller waiting on the same key, so it does not end when the
	// first caller gives up; each caller still returns at its own ctx.
	QueryTimeout time.Duration
	// StaleIfError is how long past its TTL a found entry is still
	// served when its query fails or times out [24h]: the last good
	// answer (RFC 5861's stale-if-error). It is never served once the
	// database answered, found or not found. A negative value disables
	// it. Organization integrations (the credential proxy's first
	// lookup) are never served stale, and identities are never cached.
	StaleIfError time.Duration
	// Metrics counts stale answers; nil counts nothing.
	Metrics *Metrics
	// SourceName names the Source's database (its host, port and name,
	// never a password); a snapshot of another database is not loaded.
	SourceName string
	// NeedsMetadata are the providers whose integrations are of no use
	// without their metadata (capture verifies their webhooks with a
	// secret in it). The snapshot file holds no metadata, so it leaves
	// their integrations out: served from it, they would fail the check.
	NeedsMetadata []string
	// SnapshotMetadata are the members of an integration's metadata that
	// the snapshot file keeps: those read at the edge that hold no secret
	// (Slack's scopes). Every other member (tokens, signing secrets) is
	// left out.
	SnapshotMetadata []string
	// OnFailing, when set, is called when the Source starts failing
	// (true, with the error) and when it answers again (false, nil): once
	// per change, however many lookups fail in between, so that an
	// outage is one log line and not one per request. It runs on the
	// lookup's path and must be quick.
	OnFailing func(failing bool, err error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Directory is the cached directory used on every request: static
// organizations first, then a TTL cache with negative caching, then the
// Source, with concurrent misses on one key single-flighted into one query.
// When the Source fails, the last good answer is served (StaleIfError);
// the last good answers can be saved to and restored from a snapshot
// (snapshot.go). Values returned share memory with the cache
// (Integration.Organizations, Metadata): callers must not modify them.
// Identity is never cached. The zero value is not usable; build one with
// New. Safe for concurrent use.
type Directory struct {
	src           Source
	now           func() time.Time
	ttl           time.Duration
	negativeTTL   time.Duration
	queryTimeout  time.Duration
	sourceName    string
	needsMetadata map[string]bool
	// snapshotMetadata are the metadata members the snapshot file keeps.
	snapshotMetadata []string
	health           health // the Source's answers and failures (stale.go)

	staticByID   map[int64]Organization
	staticBySlug map[string]Organization
	// Static integrations, with the regions of static organizations
	// filled in; staticIntegByID holds the same values.
	staticIntegByExt map[externalKey]Integration
	staticIntegByID  map[int64]Integration
	// staticOrgInteg holds the static integrations' organization
	// integrations that have an id, for the credential proxy.
	staticOrgInteg map[int64]OrganizationIntegration

	orgBySlug    flight[string, Organization]
	orgByID      flight[int64, Organization]
	installation flight[string, SentryAppInstallation]
	appByID      flight[int64, SentryApp]
	appBySlug    flight[string, SentryApp]
	projectKey   flight[string, string]
	integByExt   flight[externalKey, Integration]
	integByID    flight[int64, Integration]
	orgInteg     flight[int64, OrganizationIntegration]
}

// flight is one lookup kind: its cache and its single-flight group.
// The query is bound once in New so that the hit path builds no closure.
type flight[K comparable, V any] struct {
	cache *ttlCache[K, V]
	group singleflight.Group
	key   func(K) string
	query func(context.Context, K) (V, error)
	// stale is how long past expiry a found entry answers a failed
	// query (nanoseconds; 0: never), and staleAnswers counts those.
	stale        int64
	staleAnswers staleCounter
	// failedAt is when this kind's last query failed (unix nanoseconds),
	// 0 once one was answered since. Per kind, not per directory: one
	// broken table must not make the other kinds answer stale.
	failedAt atomic.Int64
}

func (f *flight[K, V]) init(maxEntries int, hash func(K) uint64, key func(K) string, query func(context.Context, K) (V, error), stale time.Duration, counted staleCounter) {
	f.cache = newTTLCache[K, V](maxEntries, hash, stale)
	f.key = key
	f.query = query
	f.stale = max(int64(stale), 0)
	f.staleAnswers = counted
}

// New returns a Directory reading from src (nil means static entries only).
func New(src Source, opts Options) *Directory {
	d := &Directory{
		src:              src,
		now:              opts.Now,
		ttl:              opts.TTL,
		negativeTTL:      opts.NegativeTTL,
		queryTimeout:     opts.QueryTimeout,
		sourceName:       opts.SourceName,
		needsMetadata:    make(map[string]bool, len(opts.NeedsMetadata)),
		snapshotMetadata: opts.SnapshotMetadata,
		staticByID:       make(map[int64]Organization, len(opts.Organizations)),
		staticBySlug:     make(map[string]Organization, len(opts.Organizations)),
	}
	d.health.onFailing = opts.OnFailing
	for _, p := range opts.NeedsMetadata {
		d.needsMetadata[p] = true
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.ttl == 0 {
		d.ttl = DefaultTTL
	}
	if d.negativeTTL == 0 {
		d.negativeTTL = DefaultNegativeTTL
	}
	if d.queryTimeout <= 0 {
		d.queryTimeout = DefaultQueryTimeout
	}
	maxEntries := opts.MaxEntries
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	addStatic(d, opts.Organizations, opts.Integrations)
	stale := opts.StaleIfError
	if stale == 0 {
		stale = DefaultStaleIfError
	}
	if stale < 0 || d.ttl < 0 {
		stale = 0 // nothing is kept to be served stale
	}
	counter := func(kind string) staleCounter { return d.health.counter(opts.Metrics, kind) }
	idKey := func(id int64) string { return strconv.FormatInt(id, 10) }
	strKey := func(s string) string { return s }
	d.orgBySlug.init(maxEntries, hashString, strKey, d.orgBySlugQuery, stale, counter(kindOrganization))
	d.orgByID.init(maxEntries, hashInt, idKey, d.orgByIDQuery, stale, counter(kindOrganization))
	d.installation.init(maxEntries, hashString, strKey, d.installationQuery, stale, counter(kindInstallation))
	d.appByID.init(maxEntries, hashInt, idKey, d.appByIDQuery, stale, counter(kindSentryApp))
	d.appBySlug.init(maxEntries, hashString, strKey, d.appBySlugQuery, stale, counter(kindSentryApp))
	d.projectKey.init(maxEntries, hashString, strKey, d.projectKeyQuery, stale, counter(kindProjectKey))
	d.integByExt.init(maxEntries, hashExternal, func(k externalKey) string { return k.Provider + "\x00" + k.ExternalID }, d.integByExtQuery, stale, counter(kindIntegration))
	d.integByID.init(maxEntries, hashInt, idKey, d.integByIDQuery, stale, counter(kindIntegration))
	// The credential proxy's first lookup: a stale answer here would let
	// it act for an organization integration that was disabled.
	d.orgInteg.init(maxEntries, hashInt, idKey, d.orgIntegQuery, 0, staleCounter{})
	return d
}

// addStatic indexes the configuration's static organizations and
// integrations, which are consulted before the database; an integration's
// organizations take their region from the static organizations.
func addStatic(d *Directory, orgs []Organization, integrations []Integration) {
	for _, o := range orgs {
		d.staticByID[o.ID] = o
		d.staticBySlug[o.Slug] = o
	}
	if len(integrations) > 0 {
		d.staticIntegByExt = make(map[externalKey]Integration, len(integrations))
		d.staticIntegByID = make(map[int64]Integration, len(integrations))
	}
	for _, in := range integrations {
		in.Organizations = append([]OrganizationIntegration(nil), in.Organizations...)
		for i := range in.Organizations {
			oi := &in.Organizations[i]
			oi.IntegrationID = in.ID
			if o, ok := d.staticByID[oi.OrganizationID]; ok {
				oi.Region = o.Region
			}
		}
		d.staticIntegByExt[externalKey{in.Provider, in.ExternalID}] = in
		d.staticIntegByID[in.ID] = in
		for _, oi := range in.Organizations {
			if oi.ID != 0 {
				if d.staticOrgInteg == nil {
					d.staticOrgInteg = map[int64]OrganizationIntegration{}
				}
				d.staticOrgInteg[oi.ID] = oi
			}
		}
	}
}

// lookup is the shared path of every cached lookup: cache, then one
// single-flighted query whose result (or ErrNotFound) is cached. When the
// query fails or times out, the last good answer is served if there is
// one within the stale bound (serveStale); while the database is failing,
// a caller that holds one is served it without a query for failingRetry
// after the last failure, and after that waits at most failingWait for
// its query.
func lookup[K comparable, V any](ctx context.Context, d *Directory, f *flight[K, V], k K) (V, error) {
	var zero V
	now := d.now().UnixNano()
	if e, ok := f.cache.get(k, now); ok {
		if e.missing {
			return zero, ErrNotFound
		}
		return e.v, nil
	}
	if d.src == nil {
		return zero, ErrNotFound
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if f.recentlyFailed(now) {
		if v, ok := f.serveStale(k, now); ok {
			return v, nil
		}
	}
	ch := f.group.DoChan(f.key(k), func() (any, error) {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.queryTimeout)
		defer cancel()
		v, err := f.query(qctx, k)
		now := d.now()
		switch {
		case err == nil:
			f.answered()
			d.health.answered(now)
			if d.ttl > 0 {
				f.cache.put(k, cacheEntry[V]{v: v, expires: now.Add(d.ttl).UnixNano()}, now.UnixNano())
			}
		case errors.Is(err, ErrNotFound):
			f.answered()
			d.health.answered(now)
			err = ErrNotFound
			if d.negativeTTL > 0 {
				f.cache.put(k, cacheEntry[V]{missing: true, expires: now.Add(d.negativeTTL).UnixNano()}, now.UnixNano())
			}
		default:
			f.failedAt.Store(now.UnixNano())
			d.health.failed(now, err)
		}
		return v, err
	})
	failing := f.failingWait(k, d)
	for {
		select {
		case r := <-ch:
			if r.Err != nil {
				if r.Err != ErrNotFound {
					if v, ok := f.serveStale(k, d.now().UnixNano()); ok {
						return v, nil
					}
				}
				return zero, r.Err
			}
			return r.Val.(V), nil
		case <-failing:
			failing = nil
			now := d.now().UnixNano()
			if v, ok := f.serveStale(k, now); ok {
				// No answer within failingWait counts as a failure, so
				// that the next callers take the last good answer at once
				// rather than join the same hanging query for as long.
				f.failedAt.Store(now)
				return v, nil
			}
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
}

// Organization finds an organization by slug, or by id when idOrSlug is all
// digits.
func (d *Directory) Organization(ctx context.Context, idOrSlug string) (Organization, error) {
	if isDigits(idOrSlug) {
		id, err := strconv.ParseInt(idOrSlug, 10, 64)
		if err != nil {
			return Organization{}, ErrNotFound // out of range: no such id
		}
		return d.OrganizationByID(ctx, id)
	}
	if idOrSlug == "" {
		return Organization{}, ErrNotFound
	}
	if o, ok := d.staticBySlug[idOrSlug]; ok {
		return o, nil
	}
	return lookup(ctx, d, &d.orgBySlug, idOrSlug)
}

func (d *Directory) orgBySlugQuery(ctx context.Context, slug string) (Organization, error) {
	return d.src.OrganizationBySlug(ctx, slug)
}

// OrganizationByID finds an organization by id.
func (d *Directory) OrganizationByID(ctx context.Context, id int64) (Organization, error) {
	if o, ok := d.staticByID[id]; ok {
		return o, nil
	}
	return lookup(ctx, d, &d.orgByID, id)
}

func (d *Directory) orgByIDQuery(ctx context.Context, id int64) (Organization, error) {
	return d.src.OrganizationByID(ctx, id)
}

// SentryAppInstallation finds a Sentry App installation by uuid.
func (d *Directory) SentryAppInstallation(ctx context.Context, uuid string) (SentryAppInstallation, error) {
	if uuid == "" {
		return SentryAppInstallation{}, ErrNotFound
	}
	return lookup(ctx, d, &d.installation, uuid)
}

func (d *Directory) installationQuery(ctx context.Context, uuid string) (SentryAppInstallation, error) {
	return d.src.SentryAppInstallation(ctx, uuid)
}

// SentryApp finds a Sentry App by slug, or by id when idOrSlug is all
// digits.
func (d *Directory) SentryApp(ctx context.Context, idOrSlug string) (SentryApp, error) {
	if isDigits(idOrSlug) {
		id, err := strconv.ParseInt(idOrSlug, 10, 64)
		if err != nil {
			return SentryApp{}, ErrNotFound
		}
		return lookup(ctx, d, &d.appByID, id)
	}
	if idOrSlug == "" {
		return SentryApp{}, ErrNotFound
	}
	return lookup(ctx, d, &d.appBySlug, idOrSlug)
}

func (d *Directory) appByIDQuery(ctx context.Context, id int64) (SentryApp, error) {
	return d.src.SentryAppByID(ctx, id)
}

func (d *Directory) appBySlugQuery(ctx context.Context, slug string) (SentryApp, error) {
	return d.src.SentryAppBySlug(ctx, slug)
}

// ProjectKeyRegion returns the region of a project's public key (DSN).
func (d *Directory) ProjectKeyRegion(ctx context.Context, publicKey string) (string, error) {
	if publicKey == "" {
		return "", ErrNotFound
	}
	return lookup(ctx, d, &d.projectKey, publicKey)
}

func (d *Directory) projectKeyQuery(ctx context.Context, publicKey string) (string, error) {
	return d.src.ProjectKeyRegion(ctx, publicKey)
}

// IntegrationByExternalID finds an integration by provider and external
// id, with its active organization integrations and their regions.
func (d *Directory) IntegrationByExternalID(ctx context.Context, provider, externalID string) (Integration, error) {
	if externalID == "" {
		return Integration{}, ErrNotFound
	}
	k := externalKey{Provider: provider, ExternalID: externalID}
	if in, ok := d.staticIntegByExt[k]; ok {
		return d.withRegions(ctx, in)
	}
	return lookup(ctx, d, &d.integByExt, k)
}

// withRegions fills in the regions of a static integration's
// organizations that are not static themselves, from the organization
// lookup (cache, then database). An organization that is not found keeps
// no region, as an unmapped organization does in the database query.
func (d *Directory) withRegions(ctx context.Context, in Integration) (Integration, error) {
	copied := false
	for i := range in.Organizations {
		if in.Organizations[i].Region != "" {
			continue
		}
		o, err := d.OrganizationByID(ctx, in.Organizations[i].OrganizationID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return Integration{}, err
		}
		if !copied {
			// The static value is shared: fill in a copy.
			in.Organizations = append([]OrganizationIntegration(nil), in.Organizations...)
			copied = true
		}
		in.Organizations[i].Region = o.Region
	}
	return in, nil
}

func (d *Directory) integByExtQuery(ctx context.Context, k externalKey) (Integration, error) {
	return d.src.IntegrationByExternalID(ctx, k.Provider, k.ExternalID)
}

// IntegrationByID finds an integration by id.
func (d *Directory) IntegrationByID(ctx context.Context, id int64) (Integration, error) {
	if in, ok := d.staticIntegByID[id]; ok {
		return d.withRegions(ctx, in)
	}
	return lookup(ctx, d, &d.integByID, id)
}

func (d *Directory) integByIDQuery(ctx context.Context, id int64) (Integration, error) {
	return d.src.IntegrationByID(ctx, id)
}

// OrganizationIntegration finds one organization integration (any status)
// with the region of its organization.
func (d *Directory) OrganizationIntegration(ctx context.Context, id int64) (OrganizationIntegration, error) {
	if oi, ok := d.staticOrgInteg[id]; ok {
		if oi.Region == "" {
			o, err := d.OrganizationByID(ctx, oi.OrganizationID)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return OrganizationIntegration{}, err
			}
			oi.Region = o.Region
		}
		return oi, nil
	}
	return lookup(ctx, d, &d.orgInteg, id)
}

func (d *Directory) orgIntegQuery(ctx context.Context, id int64) (OrganizationIntegration, error) {
	return d.src.OrganizationIntegration(ctx, id)
}

// Identity reads an identity straight from the Source: tokens change on
// every refresh, so they are never cached.
func (d *Directory) Identity(ctx context.Context, id int64) (Identity, error) {
	if d.src == nil {
		return Identity{}, ErrNotFound
	}
	return d.src.Identity(ctx, id)
}

// Purge forgets every cached entry and miss, and the last good answers
// kept for stale-if-error (static entries stay). Useful after an operator
// edits the directory tables by hand.
func (d *Directory) Purge() {
	d.orgBySlug.cache.purge()
	d.orgByID.cache.purge()
	d.installation.cache.purge()
	d.appByID.cache.purge()
	d.appBySlug.cache.purge()
	d.projectKey.cache.purge()
	d.integByExt.cache.purge()
	d.integByID.cache.purge()
	d.orgInteg.cache.purge()
}

// isDigits reports whether s is non-empty and all ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
