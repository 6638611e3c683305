package drain

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// maxQueue bounds the in-memory queue of woken mailboxes. Past it a wake
// turns into a backstop scan, so a flood of distinct mailboxes cannot grow
// memory; the rows are in the store either way.
const maxQueue = 100_000

// Store is what the drainer needs of the storage (store.Postgres and
// store.SQLite have it): the backstop scan, the mailbox leases, a
// mailbox's rows and the recording of their outcomes, and, for the
// maintenance loops, the mailbox stats and the purge. A Store that is also
// a listener (PostgreSQL) wakes the drainer for other instances' captures.
type Store interface {
	// DueMailboxes lists the mailboxes with work now (the backstop scan).
	DueMailboxes(ctx context.Context, now time.Time, limit int, skipOnFailure []string) ([]string, error)

	ClaimMailbox(ctx context.Context, mailbox, owner string, now, leaseUntil time.Time) (bool, error)
	RenewLease(ctx context.Context, mailbox, owner string, leaseUntil time.Time) (bool, error)
	ReleaseMailbox(ctx context.Context, mailbox, owner string) error

	// NextPayloads reads a mailbox's rows; the drainer always passes
	// afterID 0 (see drainMailbox).
	NextPayloads(ctx context.Context, mailbox string, afterID int64, now time.Time, dueOnly bool, limit int) ([]store.Payload, error)
	DeletePayload(ctx context.Context, id int64) error
	ReschedulePayload(ctx context.Context, id int64, attempts int, scheduleFor time.Time, lastStatus int, lastError string) error
	DeadLetterPayload(ctx context.Context, id int64, reason string, lastStatus int, lastError string, now time.Time) error
	RecordRegionAnswer(ctx context.Context, id int64, mailbox string, answer []byte, lastStatus int, now time.Time) error

	// Mailboxes feeds the depth and age gauges.
	Mailboxes(ctx context.Context, now time.Time) ([]store.MailboxStats, error)
	PurgeDeadLetters(ctx context.Context, before time.Time, batch int) (int, error)
}

// Drainer delivers stored payloads to their regions. Build it with New and
// run it with Run; Wake is safe to call at any time, before, during or
// after Run.
type Drainer struct {
	cfg            Config
	st             Store
	regions        func(name string) (*url.URL, bool)
	log            *zap.Logger
	m              *Metrics
	client         *http.Client
	callbackClient *http.Client
	callbacks      *callbackPolicy
	skip           map[string]bool

	wakeCh  chan struct{}
	running atomic.Bool
	hardCtx context.Context

	mu      sync.Mutex
	queue   []string
	queued  map[string]struct{}
	active  map[string]bool // mailboxes being drained here -> woken again meanwhile
	busy    int
	scanAll bool
	parked  map[string]time.Time  // mailboxes set aside until then (real time)
	held    map[string]*heldLease // leases this drainer owns

	bmu      sync.Mutex
	breakers map[string]*breaker

	lmu     sync.Mutex
	lastLog map[string]time.Time
}

// New builds a Drainer over st. regions resolves a region name to its
// address (false for an unknown region). logger and metrics may be nil.
func New(cfg Config, st Store, regions func(name string) (*url.URL, bool), logger *zap.Logger, metrics *Metrics) *Drainer {
	cfg = cfg.withDefaults()
	if cfg.Owner == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.Owner = "drain-" + hex.EncodeToString(b[:])
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	if metrics == nil {
		metrics = NewMetrics()
	}
	if cfg.Transport == nil {
		cfg.Transport = newTransport(cfg)
	}
	callbacks, err := newCallbackPolicy(cfg.CallbackHosts)
	if err != nil {
		// The config layer validates entries (CheckCallbackHost); an
		// invalid one reaching here widens nothing.
		logger.Error("ignoring callback_hosts", zap.Error(err))
		callbacks, _ = newCallbackPolicy(nil)
	}
	d := &Drainer{
		cfg:            cfg,
		st:             st,
		regions:        regions,
		log:            logger,
		m:              metrics,
		client:         &http.Client{Transport: cfg.Transport, CheckRedirect: httpx.NoRedirects},
		callbackClient: &http.Client{Transport: newCallbackTransport(cfg, callbacks), CheckRedirect: httpx.NoRedirects},
		callbacks:      callbacks,
		skip:           make(map[string]bool, len(cfg.SkipOnFailure)),
		wakeCh:         make(chan struct{}, 1),
		hardCtx:        context.Background(),
		queued:         make(map[string]struct{}),
		active:         make(map[string]bool),
		parked:         make(map[string]time.Time),
		held:           make(map[string]*heldLease),
		breakers:       make(map[string]*breaker),
		lastLog:        make(map[string]time.Time),
	}
	for _, p := range cfg.SkipOnFailure {
		d.skip[p] = true
	}
	return d
}

// newTransport is the shared transport for deliveries: keep-alive to a
// handful of regions, enough idle connections for every worker.
func newTransport(cfg Config) *http.Transport {
	return httpx.NewTransport(httpx.TransportOptions{
		MaxIdleConns:          4 * cfg.Workers,
		MaxIdleConnsPerHost:   cfg.Workers + 4,
		ResponseHeaderTimeout: cfg.RequestTimeout,
	})
}

// Owner is the lease owner id of this drainer.
func (d *Drainer) Owner() string { return d.cfg.Owner }

// Wake tells the drainer that these mailboxes have new payloads; with no
// names, that any mailbox may (a full scan). It never blocks.
func (d *Drainer) Wake(mailboxes ...string) {
	d.mu.Lock()
	if len(mailboxes) == 0 {
		d.scanAll = true
	}
	for _, name := range mailboxes {
		d.enqueueLocked(name)
	}
	d.mu.Unlock()
	d.signal()
}

func (d *Drainer) signal() {
	select {
	case d.wakeCh <- struct{}{}:
	default:
	}
}

// enqueueLocked queues a mailbox once; one being drained here is marked to
// be drained again when its turn ends, since its worker may already have
// read past the new rows.
func (d *Drainer) enqueueLocked(name string) {
	if name == "" {
		d.scanAll = true
		return
	}
	if _, ok := d.active[name]; ok {
		d.active[name] = true
		return
	}
	if _, ok := d.queued[name]; ok {
		return
	}
	if len(d.queue) >= maxQueue {
		d.scanAll = true
		return
	}
	d.queued[name] = struct{}{}
	d.queue = append(d.queue, name)
}

// Run drains mailboxes until ctx ends. Then it stops taking work, lets
// in-flight deliveries finish and be recorded for up to StopGrace, abandons
// the rest unrecorded (their leases are released or lapse, and the rows are
// delivered again later), and returns.
func (d *Drainer) Run(ctx context.Context) {
	if !d.running.CompareAndSwap(false, true) {
		return
	}
	defer d.running.Store(false)
	hardCtx, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	d.mu.Lock()
	d.hardCtx = hardCtx
	d.scanAll = true
	d.mu.Unlock()
	stopAfter := context.AfterFunc(ctx, func() {
		t := time.NewTimer(d.cfg.StopGrace)
		defer t.Stop()
		select {
		case <-t.C:
			hardCancel()
		case <-hardCtx.Done():
		}
	})
	defer stopAfter()

	d.log.Info("mailbox drainer started",
		zap.String("owner", d.cfg.Owner),
		zap.Int("workers", d.cfg.Workers),
		zap.Duration("poll_interval", d.cfg.PollInterval))

	work := make(chan string, d.cfg.Workers)
	var wg sync.WaitGroup
	for i := 0; i < d.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.worker(ctx, work)
		}()
	}
	background := []func(context.Context){d.probeLoop, d.gaugeLoop, d.purgeLoop, d.leaseLoop}
	if w, ok := d.st.(listener); ok {
		background = append(background, func(ctx context.Context) { d.listen(ctx, w) })
	}
	for _, f := range background {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer d.recoverLoop("background")
			f(ctx)
		}()
	}

	poll := time.NewTicker(d.cfg.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		d.dispatch(ctx, work)
		select {
		case <-ctx.Done():
		case <-d.wakeCh:
		case <-poll.C:
			d.mu.Lock()
			d.scanAll = true
			d.mu.Unlock()
		}
	}
	close(work)
	wg.Wait()
	// Hand back the leases held between turns, so that the next drainer
	// (a reload's, or this instance restarted) need not wait for them.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	d.releaseIdle(rctx, 0, 0)
	cancel()
	// Each config builds its own transport: without this, every reload
	// would leave its keep-alive connections (and their goroutines) open
	// to the regions.
	d.client.CloseIdleConnections()
	d.callbackClient.CloseIdleConnections()
	d.log.Info("mailbox drainer stopped", zap.String("owner", d.cfg.Owner))
}

// worker drains the mailboxes it is handed, one at a time.
func (d *Drainer) worker(ctx context.Context, work <-chan string) {
	for name := range work {
		more := false
		if ctx.Err() == nil {
			more = d.drainSafely(ctx, name)
		}
		d.finish(name, more)
	}
}

func (d *Drainer) drainSafely(ctx context.Context, name string) (more bool) {
	defer d.recoverLoop("mailbox drain")
	return d.drainMailbox(ctx, name)
}

func (d *Drainer) recoverLoop(what string) {
	if r := recover(); r != nil {
		d.log.Error("drainer panic recovered", zap.String("in", what), zap.Any("panic", r), zap.Stack("stack"))
	}
}

// finish ends a mailbox's turn, queueing it again when it was woken
// meanwhile or stopped only because its claim was used up.
func (d *Drainer) finish(name string, more bool) {
	d.mu.Lock()
	dirty := d.active[name]
	delete(d.active, name)
	d.busy--
	if dirty || more {
		d.enqueueLocked(name)
	}
	d.mu.Unlock()
	d.signal()
}

// dispatch runs a backstop scan when one is asked for, then hands queued
// mailboxes to idle workers.
func (d *Drainer) dispatch(ctx context.Context, work chan<- string) {
	d.mu.Lock()
	scan := d.scanAll
	d.scanAll = false
	d.mu.Unlock()
	if scan {
		d.scan(ctx)
	}
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.busy < d.cfg.Workers && len(d.queue) > 0 {
		name := d.queue[0]
		d.queue[0] = ""
		d.queue = d.queue[1:]
		delete(d.queued, name)
		if _, ok := d.active[name]; ok {
			d.active[name] = true
			continue
		}
		if d.blockedLocked(name, now) {
			continue
		}
		d.active[name] = false
		d.busy++
		work <- name // never blocks: capacity is Workers and busy < Workers
	}
	if len(d.queue) == 0 && cap(d.queue) > 1024 {
		d.queue = nil // give a large drained backlog's array back
	}
}

// scan asks the store for due mailboxes (the backstop for lost wakes,
// retries coming due and other instances' captures). Mailboxes of a region
// whose breaker is open are due but wait; when they fill most of a page,
// the scan looks further so other regions' mailboxes are not starved by a
// long outage.
func (d *Drainer) scan(ctx context.Context) {
	limit := d.cfg.ScanLimit
	for try := 0; try < 3 && ctx.Err() == nil; try++ {
		sctx, cancel := context.WithTimeout(ctx, d.opTimeout())
		names, err := d.st.DueMailboxes(sctx, d.cfg.Now(), limit, d.cfg.SkipOnFailure)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				d.logLimited("scan", "listing due mailboxes failed", zap.Error(err))
			}
			return
		}
		now := time.Now()
		blocked := 0
		d.mu.Lock()
		for _, name := range names {
			if _, ok := d.active[name]; ok {
				continue // its worker is on it
			}
			if d.blockedLocked(name, now) {
				blocked++
				continue
			}
			d.enqueueLocked(name)
		}
		d.mu.Unlock()
		if len(names) < limit || blocked < len(names)/2 {
			return
		}
		limit *= 4
	}
}

// blockedLocked reports whether a mailbox must wait: its region's breaker
// is open, or it was set aside (unknown region).
func (d *Drainer) blockedLocked(name string, now time.Time) bool {
	if until, ok := d.parked[name]; ok {
		if now.Before(until) {
			return true
		}
		delete(d.parked, name)
	}
	// A callback mailbox's row is the region's answer on its way to
	// Slack or Discord: the region's breaker does not hold it.
	if region := d.regionOf(name); region != "" && !isCallbackMailbox(name) {
		if b := d.existingBreaker(region); b != nil && b.isOpen() {
			return true
		}
	}
	return false
}

// regionOf reads the region from a mailbox name of the newest form
// provider:region:subject[:bucket]; "" when the name has another form.
func (d *Drainer) regionOf(name string) string {
	parts := strings.SplitN(name, ":", 4)
	if len(parts) < 3 {
		return ""
	}
	if _, ok := d.regions(parts[1]); !ok {
		return ""
	}
	return parts[1]
}

// providerOf is the first part of a mailbox name.
func providerOf(name string) string {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		return name[:i]
	}
	return name
}

func (d *Drainer) park(name string, for_ time.Duration) {
	d.mu.Lock()
	d.parked[name] = time.Now().Add(for_)
	if len(d.parked) > maxQueue {
		now := time.Now()
		for k, until := range d.parked {
			if now.After(until) {
				delete(d.parked, k)
			}
		}
	}
	d.mu.Unlock()
}

func (d *Drainer) breaker(region string) *breaker {
	d.bmu.Lock()
	defer d.bmu.Unlock()
	b, ok := d.breakers[region]
	if !ok {
		b = newBreaker(d.cfg.BreakerFailures)
		d.breakers[region] = b
		d.m.BreakerOpen.WithLabelValues(region).Set(0)
	}
	return b
}

func (d *Drainer) existingBreaker(region string) *breaker {
	d.bmu.Lock()
	defer d.bmu.Unlock()
	return d.breakers[region]
}

// BreakerOpen reports whether deliveries to region are paused.
func (d *Drainer) BreakerOpen(region string) bool {
	b := d.existingBreaker(region)
	return b != nil && b.isOpen()
}

// OpenBreakers lists the regions whose deliveries are paused, sorted.
func (d *Drainer) OpenBreakers() []string {
	d.bmu.Lock()
	var out []string
	for r, b := range d.breakers {
		if b.isOpen() {
			out = append(out, r)
		}
	}
	d.bmu.Unlock()
	sort.Strings(out)
	return out
}

// opTimeout bounds one store operation.
func (d *Drainer) opTimeout() time.Duration {
	t := d.cfg.Lease / 3
	if t < time.Second {
		t = time.Second
	}
	if t > 10*time.Second {
		t = 10 * time.Second
	}
	return t
}

// logLimited logs a warning at most once per 10 s per key, so an outage
// does not flood the log.
func (d *Drainer) logLimited(key, msg string, fields ...zap.Field) {
	now := time.Now()
	d.lmu.Lock()
	last, seen := d.lastLog[key]
	if seen && now.Sub(last) < 10*time.Second {
		d.lmu.Unlock()
		return
	}
	if len(d.lastLog) > 10_000 {
		clear(d.lastLog)
	}
	d.lastLog[key] = now
	d.lmu.Unlock()
	d.log.Warn(msg, fields...)
}
