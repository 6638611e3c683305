package mailbox

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// InsertFunc stores rows in one transaction (store.Store.InsertPayloads).
type InsertFunc func(ctx context.Context, rows []store.NewPayload) ([]store.InsertResult, error)

// BatcherOptions tune group commit. Zero values mean defaults.
type BatcherOptions struct {
	// MaxRows caps the rows of one batch [512].
	MaxRows int
	// MaxBytes caps the body bytes of one batch [32 MiB], so a burst of
	// large webhooks commits in several statements rather than one that
	// holds them all twice in memory (once encoded) or passes
	// PostgreSQL's 1 GB limit on a parameter. A single request larger than
	// this still goes in, alone.
	MaxBytes int
	// Linger is the longest a flusher waits for more requests once the
	// queue is empty [1ms]. It waits only while its batch is smaller
	// than its previous one: under load the clients of the last batch are
	// about to send again, and one commit for all of them beats several;
	// at low load (batches of one) it never waits.
	Linger time.Duration
	// Flushers is how many batches may commit at once [2]; use 1 for
	// SQLite, which has one writer anyway.
	Flushers int
	// CommitTimeout bounds one InsertPayloads call [5s].
	CommitTimeout time.Duration
	// MaxQueueWait is how long a request may wait for a flusher [5s]:
	// one still queued after that fails with ErrQueueTimeout instead of
	// going into a batch. With CommitTimeout it bounds a Submit (10 s by
	// default) without a timer per request, which showed in profiles at
	// 10,000 captures/s.
	MaxQueueWait time.Duration
	// IdleExit is how long an idle flusher lives [2s].
	IdleExit time.Duration
	// OnCommit is called after each commit with the distinct mailboxes
	// of the rows that were stored (not duplicates).
	OnCommit func(mailboxes []string)
}

// Batcher commits concurrent captures together. Each Submit waits for the
// commit of the batch its rows went into, so a 202 always follows a
// durable write.
//
// Flushers are started on demand and exit when idle, so the batcher owns no
// goroutine unless there is work, Provision can create one for free, and a
// request still running on a handler whose config was unloaded completes
// normally: there is nothing to stop. Close only makes idle flushers leave
// at once.
type Batcher struct {
	insert InsertFunc
	opts   BatcherOptions

	queue   chan *job
	running atomic.Int32
	idle    atomic.Int32
	closed  chan struct{}
	once    sync.Once
}

type job struct {
	queued  time.Time
	rows    []store.NewPayload
	results []store.InsertResult
	err     error
	done    chan struct{}
}

var jobPool = sync.Pool{New: func() any { return &job{done: make(chan struct{}, 1)} }}

// ErrQueueTimeout is a Submit whose rows waited MaxQueueWait for a
// flusher: they were not stored.
var ErrQueueTimeout = errors.New("mailbox: no flusher took the rows in time")

// NewBatcher returns a Batcher writing through insert.
func NewBatcher(insert InsertFunc, opts BatcherOptions) *Batcher {
	if opts.MaxRows <= 0 {
		opts.MaxRows = 512
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 32 << 20
	}
	if opts.Linger < 0 {
		opts.Linger = 0
	} else if opts.Linger == 0 {
		opts.Linger = time.Millisecond
	}
	if opts.Flushers <= 0 {
		opts.Flushers = 2
	}
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = 5 * time.Second
	}
	if opts.MaxQueueWait <= 0 {
		opts.MaxQueueWait = 5 * time.Second
	}
	if opts.IdleExit <= 0 {
		opts.IdleExit = 2 * time.Second
	}
	return &Batcher{
		insert: insert,
		opts:   opts,
		queue:  make(chan *job, 8192),
		closed: make(chan struct{}),
	}
}

// Submit stores rows in the next batch and waits for its commit, or for
// ctx; once queued, at most MaxQueueWait + CommitTimeout. The results are
// in the order of rows. When ctx ends first the rows may still be
// committed later; the caller answers as if they were not (the provider
// retries, and the delivery key de-duplicates).
func (b *Batcher) Submit(ctx context.Context, rows []store.NewPayload) ([]store.InsertResult, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	j := jobPool.Get().(*job)
	j.rows, j.err, j.queued = rows, nil, time.Now()
	j.results = j.results[:0]
	select {
	case b.queue <- j:
	case <-ctx.Done():
		j.rows = nil
		jobPool.Put(j)
		return nil, ctx.Err()
	}
	if b.idle.Load() == 0 {
		b.spawn()
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		// The flusher still owns j; let the garbage collector have it.
		return nil, ctx.Err()
	}
	res, err := append([]store.InsertResult(nil), j.results...), j.err
	j.rows = nil
	jobPool.Put(j)
	return res, err
}

// Close lets idle flushers exit now. Submit keeps working afterwards.
func (b *Batcher) Close() {
	if b == nil {
		return
	}
	b.once.Do(func() { close(b.closed) })
}

// spawn starts one more flusher unless Flushers are running.
func (b *Batcher) spawn() {
	for {
		n := b.running.Load()
		if n >= int32(b.opts.Flushers) {
			return
		}
		if b.running.CompareAndSwap(n, n+1) {
			go b.flusher()
			return
		}
	}
}

func (b *Batcher) flusher() {
	idleTimer := time.NewTimer(b.opts.IdleExit)
	defer idleTimer.Stop()
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	var (
		jobs []*job
		rows = make([]store.NewPayload, 0, b.opts.MaxRows)
		last int // rows in the previous batch
	)
	for {
		b.idle.Add(1)
		resetTimer(idleTimer, b.opts.IdleExit)
		var first *job
		select {
		case first = <-b.queue:
		case <-idleTimer.C:
		case <-b.closed:
		}
		b.idle.Add(-1)
		if first == nil {
			if b.leave() {
				return
			}
			continue
		}
		if b.expired(first) {
			continue
		}
		jobs = append(jobs[:0], first)
		rows = append(rows[:0], first.rows...)
		rows, jobs = b.collect(rows, jobs, linger, last)
		last = len(rows)
		b.commit(rows, jobs)
		clear(rows)
		clear(jobs)
	}
}

// leave decides whether an idle flusher exits. It stays when work arrived
// between its timeout and now, so no queued job is ever left without a
// flusher.
func (b *Batcher) leave() bool {
	b.running.Add(-1)
	if len(b.queue) == 0 {
		return true
	}
	for {
		n := b.running.Load()
		if n >= int32(b.opts.Flushers) {
			return true
		}
		if b.running.CompareAndSwap(n, n+1) {
			return false
		}
	}
}

// collect adds queued jobs to the batch: all that are waiting, then, while
// the batch is smaller than the previous one (want), what arrives within
// Linger; never more than MaxRows, and no more once MaxBytes of bodies
// are in.
func (b *Batcher) collect(rows []store.NewPayload, jobs []*job, linger *time.Timer, want int) ([]store.NewPayload, []*job) {
	want = min(want, b.opts.MaxRows)
	size := 0
	for i := range rows {
		size += len(rows[i].Body)
	}
	add := func(j *job) {
		if b.expired(j) {
			return
		}
		jobs = append(jobs, j)
		rows = append(rows, j.rows...)
		for i := range j.rows {
			size += len(j.rows[i].Body)
		}
	}
	lingering := false
	defer func() {
		if lingering {
			linger.Stop()
		}
	}()
	for len(rows) < b.opts.MaxRows && size < b.opts.MaxBytes {
		select {
		case j := <-b.queue:
			add(j)
			continue
		default:
		}
		if len(rows) >= want {
			return rows, jobs
		}
		if lingering {
			// Linger already started: wait only on the timer.
			select {
			case j := <-b.queue:
				add(j)
				continue
			case <-linger.C:
				lingering = false
				return rows, jobs
			}
		}
		if b.opts.Linger <= 0 {
			return rows, jobs
		}
		linger.Reset(b.opts.Linger)
		lingering = true
	}
	return rows, jobs
}

// expired fails a job that waited MaxQueueWait in the queue, and says so.
func (b *Batcher) expired(j *job) bool {
	if time.Since(j.queued) <= b.opts.MaxQueueWait {
		return false
	}
	j.err = ErrQueueTimeout
	j.done <- struct{}{}
	return true
}

func (b *Batcher) commit(rows []store.NewPayload, jobs []*job) {
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.CommitTimeout)
	results, err := b.insert(ctx, rows)
	cancel()
	if err == nil && len(results) != len(rows) {
		err = errors.New("mailbox: store returned a short result")
	}
	if err != nil && len(jobs) > 1 && !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		// One bad row must not fail its neighbours: retry each
		// request on its own.
		for _, j := range jobs {
			b.commit(j.rows, []*job{j})
		}
		return
	}
	off := 0
	for _, j := range jobs {
		n := len(j.rows)
		if err != nil {
			j.err = err
		} else {
			j.results = append(j.results[:0], results[off:off+n]...)
		}
		off += n
		j.done <- struct{}{}
	}
	if err == nil && b.opts.OnCommit != nil {
		b.opts.OnCommit(stored(rows, results))
	}
}

// stored returns the distinct mailboxes that got new rows.
func stored(rows []store.NewPayload, results []store.InsertResult) []string {
	seen := make(map[string]struct{}, 8)
	out := make([]string, 0, 8)
	for i := range rows {
		if results[i].Duplicate {
			continue
		}
		name := rows[i].MailboxName
		if _, ok := seen[name]; ok {
			continue
		}
		seen[name] = struct{}{}
		out = append(out, name)
	}
	return out
}

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	select {
	case <-t.C:
	default:
	}
	t.Reset(d)
}
