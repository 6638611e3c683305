package mailbox

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// InsertFunc stores rows in one transaction (an engine's InsertPayloads).
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

// Releaser owns the memory a Submit's rows point into (a pooled body
// buffer, the rows slice itself). The batcher calls Release exactly once,
// when nothing reads that memory any more; the caller recycles it there
// and nowhere else.
type Releaser interface{ Release() }

// ReleaseFunc adapts a function to Releaser.
type ReleaseFunc func()

// Release calls f.
func (f ReleaseFunc) Release() { f() }

// A job's life. Submit and the flushers hand it over with compare-and-swap
// on state, so exactly one of them releases the caller's memory:
//
//	queued -> taken -> done        the usual way: Submit releases
//	queued -> done                 it waited MaxQueueWait: Submit releases
//	queued -> dropped              Submit gave up before any flusher read
//	                               the rows: Submit releases, and the
//	                               flusher that dequeues it recycles it
//	taken  -> abandoned            Submit gave up while the rows were in a
//	                               batch: the flusher releases them once
//	                               the batch is done
//
// Measured: with the rows handed back on give-up instead, a client giving
// up while its batch waited on the database had its pooled body reused
// under rows still being written: 50 of 102 stored rows of a held batch
// held another request's bytes (TestBatcherAbandonedSubmitsKeepTheirBytes).
const (
	jobQueued int32 = iota
	jobTaken
	jobDone
	jobDropped
	jobAbandoned
)

type job struct {
	queued  time.Time
	rows    []store.NewPayload
	owner   Releaser
	state   atomic.Int32
	results []store.InsertResult
	err     error
	done    chan struct{}
}

// recycle puts a job nobody refers to any more back in the pool.
func (j *job) recycle() {
	j.rows, j.owner, j.err = nil, nil, nil
	jobPool.Put(j)
}

func release(owner Releaser) {
	if owner != nil {
		owner.Release()
	}
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
// in the order of rows.
//
// Submit takes the rows and the memory they point into (bodies, headers)
// and gives them back through owner.Release (when owner is not nil): before
// it returns, or later when ctx ended while the rows were in a batch being
// committed. Such rows may still be stored, with their own bytes; the
// caller answers as if they were not (the provider retries, and the
// delivery key de-duplicates). Rows that no flusher had taken yet when ctx
// ended are never stored. So a client that gives up frees its goroutine at
// once, and nothing it leaves behind is reused while a flusher reads it;
// the usual path copies nothing.
func (b *Batcher) Submit(ctx context.Context, rows []store.NewPayload, owner Releaser) ([]store.InsertResult, error) {
	if len(rows) == 0 {
		release(owner)
		return nil, nil
	}
	j := jobPool.Get().(*job)
	j.rows, j.owner, j.err, j.queued = rows, owner, nil, time.Now()
	j.results = j.results[:0]
	j.state.Store(jobQueued)
	select {
	case b.queue <- j:
	case <-ctx.Done():
		j.recycle()
		release(owner)
		return nil, ctx.Err()
	}
	if b.idle.Load() == 0 {
		b.spawn()
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		if j.state.CompareAndSwap(jobQueued, jobDropped) {
			// No flusher read the rows; the one that dequeues j
			// recycles it.
			release(owner)
			return nil, ctx.Err()
		}
		if j.state.CompareAndSwap(jobTaken, jobAbandoned) {
			// A flusher is committing the rows: it releases them.
			return nil, ctx.Err()
		}
		<-j.done // done meanwhile: the answer is there
	}
	res, err := append([]store.InsertResult(nil), j.results...), j.err
	j.recycle()
	release(owner)
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
		if !b.admit(first) {
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
		if !b.admit(j) {
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

// admit takes a dequeued job into the batch being built. It refuses one
// whose Submit gave up (and recycles it) and fails one that waited
// MaxQueueWait.
func (b *Batcher) admit(j *job) bool {
	if !j.state.CompareAndSwap(jobQueued, jobTaken) {
		j.recycle() // dropped: its Submit has returned and released the rows
		return false
	}
	if time.Since(j.queued) <= b.opts.MaxQueueWait {
		return true
	}
	j.err = ErrQueueTimeout
	finish(j)
	return false
}

// finish hands a taken job's outcome to its Submit, or, when the Submit
// gave up meanwhile, releases the caller's memory: nothing reads the rows
// any more.
func finish(j *job) {
	if j.state.CompareAndSwap(jobTaken, jobDone) {
		j.done <- struct{}{}
		return
	}
	release(j.owner)
	j.recycle()
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
	// The wake goes out before the answers, while every row still holds
	// its own bytes, and a caller that got its answer knows the drainer
	// was told.
	if err == nil && b.opts.OnCommit != nil {
		b.opts.OnCommit(stored(rows, results))
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
		finish(j)
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
