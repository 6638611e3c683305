package directory

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sentrysilo/caddy-silo/modules/internal/promutil"
)

// Kinds of lookup, the label of the stale-answer metric.
const (
	kindOrganization = "organization"
	kindInstallation = "sentry_app_installation"
	kindSentryApp    = "sentry_app"
	kindProjectKey   = "project_key"
	kindIntegration  = "integration"
)

// failingWait bounds how long a caller that holds a last good answer waits
// for its query while the database is failing (a query failed and none was
// answered since). A healthy directory query answers in about a
// millisecond; a database that hangs (a partition) only fails at pgx's
// 5 s connect timeout or the 5 s query timeout, and without this bound
// every gateway request would wait that long for its stale answer. The
// query goes on, so the first answer after the database is back replaces
// the entry.
const failingWait = 250 * time.Millisecond

// failingRetry is how long after a failure of its kind of lookup a key that
// has a last good answer is served it without a query. Without it a database that is down
// gets one connection attempt per request (10,000 a second from a busy
// gateway, all failing), and one that is overloaded gets every request's
// query on top of what made it slow. With it, each key asks once a second,
// so the first answer after the database is back is seen within a second:
// well within the 30 s TTL in which a change is seen anyway.
const failingRetry = time.Second

// Metrics are the directory's collectors. Build them once per process and
// register them with every config's registry, so that they keep counting
// across reloads.
type Metrics struct {
	StaleAnswers *prometheus.CounterVec
}

// NewMetrics builds the collectors.
func NewMetrics() *Metrics {
	return &Metrics{
		StaleAnswers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caddy_sentry_directory_stale_answers_total",
			Help: "Directory lookups answered with the last good answer because the directory's database failed or timed out, by kind.",
		}, []string{"kind"}),
	}
}

// Register registers the collectors with reg (nil: none).
func (m *Metrics) Register(reg prometheus.Registerer) {
	promutil.Register(reg, m.StaleAnswers)
}

// staleCounter counts the stale answers of one lookup kind: in the metric
// (process-wide) and in the directory's own total (State).
type staleCounter struct {
	metric prometheus.Counter // nil when not counted
	total  *atomic.Uint64
}

func (c staleCounter) inc() {
	if c.metric != nil {
		c.metric.Inc()
	}
	if c.total != nil {
		c.total.Add(1)
	}
}

// health is what the directory knows of its Source. Only the miss path
// writes it; the hit path never touches it.
type health struct {
	lastAnswer atomic.Int64 // unix nanoseconds of the last answer (found or not found)
	lastError  atomic.Int64 // unix nanoseconds of the last failure
	errMsg     atomic.Pointer[string]
	failing    atomic.Bool   // the last query failed and none was answered since
	changes    atomic.Uint64 // answers so far: the snapshot changed when this did
	stale      atomic.Uint64 // stale answers served
	restored   atomic.Int64  // entries restored from a snapshot or the previous config
	saved      atomic.Int64  // unix nanoseconds of the last snapshot written
	saveErr    atomic.Pointer[string]
	onFailing  func(failing bool, err error) // Options.OnFailing
	// reported is when a failure was last reported to onFailing (unix
	// nanoseconds), and reportedFailing is set until its end is.
	reported        atomic.Int64
	reportedFailing atomic.Bool
}

// reportEvery is the least time between two reported failures: a database
// that fails some queries and answers others (one broken table) flips
// between failing and answering on every request, and must not log twice
// per request.
const reportEvery = time.Minute

func (h *health) counter(m *Metrics, kind string) staleCounter {
	c := staleCounter{total: &h.stale}
	if m != nil {
		c.metric = m.StaleAnswers.WithLabelValues(kind)
	}
	return c
}

func (h *health) answered(now time.Time) {
	h.lastAnswer.Store(now.UnixNano())
	// Load first: a healthy directory's misses then only read the flag.
	if h.failing.Load() && h.failing.CompareAndSwap(true, false) && h.reportedFailing.CompareAndSwap(true, false) && h.onFailing != nil {
		h.onFailing(false, nil)
	}
	h.changes.Add(1)
}

func (h *health) failed(now time.Time, err error) {
	h.lastError.Store(now.UnixNano())
	msg := err.Error()
	h.errMsg.Store(&msg)
	if h.failing.Swap(true) || h.onFailing == nil {
		return
	}
	if last := h.reported.Load(); last != 0 && now.UnixNano()-last < int64(reportEvery) {
		return
	}
	h.reported.Store(now.UnixNano())
	h.reportedFailing.Store(true)
	h.onFailing(true, err)
}

// recentlyFailed reports whether this kind may answer stale without a
// query: its last query failed, none was answered since, and that failure
// is younger than failingRetry.
func (f *flight[K, V]) recentlyFailed(now int64) bool {
	if f.stale == 0 {
		return false
	}
	t := f.failedAt.Load()
	return t != 0 && now-t < int64(failingRetry)
}

// answered clears the kind's failure (a load first: a healthy kind's
// misses only read it).
func (f *flight[K, V]) answered() {
	if f.failedAt.Load() != 0 {
		f.failedAt.Store(0)
	}
}

// failingWait is the timer of a caller that may take a stale answer
// before its query ends (nil: wait for the query). It runs while any kind
// of lookup is failing, not only this one: in a partition the first
// lookup of every other kind would otherwise wait the full query timeout
// too, and a kind whose database answers answers well within failingWait
// (a millisecond), so its caller still gets the fresh answer.
func (f *flight[K, V]) failingWait(k K, d *Directory) <-chan time.Time {
	if f.stale == 0 || (f.failedAt.Load() == 0 && !d.health.failing.Load()) {
		return nil
	}
	if _, ok := f.staleEntry(k, d.now().UnixNano()); !ok {
		return nil
	}
	return time.After(failingWait)
}

// staleEntry is k's last good answer if it is within the stale bound.
func (f *flight[K, V]) staleEntry(k K, now int64) (cacheEntry[V], bool) {
	if f.stale == 0 {
		return cacheEntry[V]{}, false
	}
	e, ok := f.cache.peek(k)
	if !ok || e.missing || now >= e.expires+f.stale {
		return cacheEntry[V]{}, false
	}
	return e, true
}

// serveStale returns k's last good answer, counted, if there is one.
func (f *flight[K, V]) serveStale(k K, now int64) (V, bool) {
	e, ok := f.staleEntry(k, now)
	if !ok {
		var zero V
		return zero, false
	}
	f.staleAnswers.inc()
	return e.v, true
}

// State is what the directory knows of its database, for status pages and
// readiness. Times are zero when the event never happened.
type State struct {
	// LastAnswer is when the database last answered a lookup, found or
	// not found.
	LastAnswer time.Time `json:"last_answer,omitzero"`
	// LastError is when a lookup last failed (an error or a timeout), and
	// LastErrorMessage its error (no password: the drivers' errors name
	// host, user and database only).
	LastError        time.Time `json:"last_error,omitzero"`
	LastErrorMessage string    `json:"last_error_message,omitempty"`
	// Failing is set while the last query failed and none was answered
	// since: lookups are being answered from the last good answers.
	Failing bool `json:"failing"`
	// StaleAnswers counts the lookups answered with a last good answer.
	StaleAnswers uint64 `json:"stale_answers"`
	// Restored counts the entries taken from a snapshot file or from the
	// previous config at start.
	Restored int64 `json:"restored"`
	// SnapshotSaved is when the snapshot file was last written, and
	// SnapshotError the last write's error ("" when it worked).
	SnapshotSaved time.Time `json:"snapshot_saved,omitzero"`
	SnapshotError string    `json:"snapshot_error,omitempty"`
}

// State returns the directory's state now.
func (d *Directory) State() State {
	h := &d.health
	s := State{
		LastAnswer:   unixTime(h.lastAnswer.Load()),
		LastError:    unixTime(h.lastError.Load()),
		Failing:      h.failing.Load(),
		StaleAnswers: h.stale.Load(),
		Restored:     h.restored.Load(),
	}
	if m := h.errMsg.Load(); m != nil {
		s.LastErrorMessage = *m
	}
	s.SnapshotSaved = unixTime(h.saved.Load())
	if m := h.saveErr.Load(); m != nil {
		s.SnapshotError = *m
	}
	return s
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
