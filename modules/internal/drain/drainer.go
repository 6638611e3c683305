package drain

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
	"github.com/sentrysilo/caddy-silo/modules/internal/mailbox"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

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
	// afterID 0 (see turn.run).
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
	cfg Config
	st  Store // records (below) over raw
	// raw is the Store as given; records retries what a region already
	// received until the database takes it (record.go).
	raw            Store
	records        *recordingStore
	regions        func(name string) (*url.URL, bool)
	log            *zap.Logger
	warn           *limitedLog
	m              *Metrics
	client         *http.Client
	callbackClient *http.Client
	callbacks      *callbackPolicy
	skip           map[string]bool // providers whose mailboxes move past a failed row

	running  atomic.Bool
	work     *workQueue
	leases   *leaseKeeper
	breakers *regionBreakers

	// The operator console's parts (pause.go, history.go, status.go).
	pauses  *pauses
	history historian // nil unless DeliveredRetention is set
	traffic *traffic  // wraps client's transport
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
		raw:            st,
		regions:        regions,
		log:            logger,
		warn:           newLimitedLog(logger),
		m:              metrics,
		client:         &http.Client{Transport: cfg.Transport, CheckRedirect: httpx.NoRedirects},
		callbackClient: &http.Client{Transport: newCallbackTransport(cfg, callbacks), CheckRedirect: httpx.NoRedirects},
		callbacks:      callbacks,
		skip:           make(map[string]bool, len(cfg.SkipOnFailure)),
	}
	for _, p := range cfg.SkipOnFailure {
		d.skip[p] = true
	}
	d.records = newRecordingStore(st, &d.cfg, logger, d.warn)
	d.st = d.records
	d.console(st)
	d.work = newWorkQueue(d.mailboxPaused)
	d.leases = newLeaseKeeper(&d.cfg, st, logger, d.warn, d.work)
	d.breakers = newRegionBreakers(cfg, metrics, logger, func() { d.Wake() })
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

// Wake tells the drainer that these mailboxes have new payloads; with no
// names, that any mailbox may (a full scan). It never blocks.
func (d *Drainer) Wake(mailboxes ...string) { d.work.wake(mailboxes...) }

// BreakerOpen reports whether deliveries to region are paused.
func (d *Drainer) BreakerOpen(region string) bool { return d.breakers.open(region) }

// mailboxPaused reports whether a mailbox waits for its region's breaker.
// A callback mailbox's row is the region's answer on its way to Slack or
// Discord: the region's breaker does not hold it. A name of another form
// (legacy) is not held here; its rows still wait, at handle, for the
// breaker of the region they name.
func (d *Drainer) mailboxPaused(name string) bool {
	if d.pauses.mailbox(name) {
		return true // an operator paused it or its region
	}
	m, ok := mailbox.Parse(name)
	return ok && !isCallback(m) && d.breakers.open(m.Region)
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
	// hard outlives ctx by StopGrace: the deliveries in flight and their
	// recording run under it.
	hard, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	d.records.until(hard)
	d.work.requestScan()
	stopAfter := context.AfterFunc(ctx, func() {
		t := time.NewTimer(d.cfg.StopGrace)
		defer t.Stop()
		select {
		case <-t.C:
			hardCancel()
		case <-hard.Done():
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
		wg.Go(func() { d.worker(ctx, hard, work) })
	}
	for _, f := range d.maintenance() {
		wg.Go(func() {
			defer d.recoverLoop("background")
			f(ctx)
		})
	}

	poll := time.NewTicker(d.cfg.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		d.dispatch(ctx, work)
		select {
		case <-ctx.Done():
		case <-d.work.woken():
		case <-poll.C:
			d.work.requestScan()
		}
	}
	close(work)
	wg.Wait()
	// Hand back the leases held between turns, so that the next drainer
	// (a reload's, or this instance restarted) need not wait for them.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	d.leases.releaseIdle(rctx, 0, 0)
	cancel()
	// Each config builds its own transport: without this, every reload
	// would leave its keep-alive connections (and their goroutines) open
	// to the regions.
	d.client.CloseIdleConnections()
	d.callbackClient.CloseIdleConnections()
	d.log.Info("mailbox drainer stopped", zap.String("owner", d.cfg.Owner))
}

// maintenance are the loops Run runs beside the workers, each until ctx
// ends.
func (d *Drainer) maintenance() []func(context.Context) {
	loops := []func(context.Context){
		(&prober{breakers: d.breakers, regions: d.regions, client: d.client, path: d.cfg.ProbePath,
			interval: d.cfg.BreakerProbeInterval, timeout: d.cfg.RequestTimeout, log: d.log}).run,
		(&gauges{st: d.st, m: d.m, warn: d.warn, interval: d.cfg.GaugeInterval, now: d.cfg.Now}).run,
		(&purger{purge: d.st.PurgeDeadLetters, what: "dead letters", log: d.log, warn: d.warn,
			retention: d.cfg.DeadLetterRetention, interval: d.cfg.PurgeInterval, now: d.cfg.Now}).run,
		d.leases.run,
	}
	if l, ok := d.raw.(listener); ok {
		loops = append(loops, func(ctx context.Context) { listen(ctx, l, d.Wake, d.warn) })
	}
	if d.history != nil {
		loops = append(loops, (&purger{purge: d.history.PurgeDelivered, what: "delivered payloads", log: d.log, warn: d.warn,
			retention: d.cfg.DeliveredRetention, interval: d.cfg.PurgeInterval, now: d.cfg.Now}).run)
	}
	return loops
}

// worker drains the mailboxes it is handed, one at a time.
func (d *Drainer) worker(ctx, hard context.Context, work <-chan string) {
	for name := range work {
		more := false
		if ctx.Err() == nil {
			more = d.drainSafely(ctx, hard, name)
		}
		d.work.finish(name, more)
	}
}

func (d *Drainer) drainSafely(ctx, hard context.Context, name string) (more bool) {
	defer d.recoverLoop("mailbox drain")
	return d.drainMailbox(ctx, hard, name)
}

func (d *Drainer) recoverLoop(what string) {
	if r := recover(); r != nil {
		d.log.Error("drainer panic recovered", zap.String("in", what), zap.Any("panic", r), zap.Stack("stack"))
	}
}

// dispatch runs a backstop scan when one is asked for, then hands queued
// mailboxes to idle workers.
func (d *Drainer) dispatch(ctx context.Context, work chan<- string) {
	if d.work.takeScan() {
		d.pauses.refresh(ctx, d.cfg.opTimeout(), d.warn)
		d.scan(ctx)
	}
	d.work.handOut(work, d.cfg.Workers)
}
