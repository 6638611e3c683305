package main

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"
)

// The floor in the capture's rhythm. Capture's clients are answered in
// bursts, one per group commit, and send again together; between two
// commits the Caddy process has nothing to do and its threads sleep. The
// floor at its own peak never sleeps, and the floor in open loop at the
// capture's rate is woken once per request, so neither says what capture
// would cost if its own work were free. pacedLoop sends the floor's POST
// in capture's pattern instead: the workers in groups of the capture's
// mean batch, each group released together once per period, the groups
// evenly staggered (two flushers commit in turn), at the capture's rate.

// xids returns the next transaction id PostgreSQL will assign: the
// difference over a run is the number of writing transactions in it,
// exactly and at once (pg_stat_database's xact_commit is flushed by each
// backend up to a second late).
func xids(ctx context.Context, db *sql.DB) int64 {
	var n int64
	if err := db.QueryRowContext(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint`).Scan(&n); err != nil {
		return -1
	}
	return n
}

// rhythm is the capture's batching as measured: rows and the commits that
// stored them.
type rhythm struct{ rows, commits int64 }

func (r rhythm) batch() float64 {
	if r.commits <= 0 {
		return 0
	}
	return float64(r.rows) / float64(r.commits)
}

// groups is how many bursts of about one batch the workers form.
func (r rhythm) groups(concurrency int) int {
	b := r.batch()
	if b <= 0 {
		return 1
	}
	return max(1, min(concurrency, int(float64(concurrency)/b+0.5)))
}

// pacedLoop runs concurrency workers in groups: group g is released at
// start + g·period/groups + k·period, and each of its workers sends once
// per release (one whose answer came after the next release waits for
// the one after, as a request that missed a commit waits for the next).
func pacedLoop(ctx context.Context, concurrency, groups int, period, d time.Duration, op func(context.Context) error) postResult {
	gates := make([]*gate, groups)
	for g := range gates {
		gates[g] = newGate()
	}
	var wg sync.WaitGroup
	var errs atomic.Int64
	lats := make([][]time.Duration, concurrency)
	start := time.Now()
	deadline := start.Add(d)
	// The pacer closes the gates when it returns (at the deadline or when
	// ctx ends), which is what lets the workers leave.
	go func() {
		defer func() {
			for _, g := range gates {
				g.close()
			}
		}()
		step := period / time.Duration(groups)
		for i := 0; ; i++ {
			at := start.Add(time.Duration(i) * step)
			if !at.Before(deadline) {
				return
			}
			select {
			case <-time.After(time.Until(at)):
			case <-ctx.Done():
				return
			}
			gates[i%groups].open()
		}
	}()
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := gates[w%groups]
			l := make([]time.Duration, 0, 1<<12)
			for ctx.Err() == nil {
				if !g.wait() {
					break
				}
				t0 := time.Now()
				if err := op(ctx); err != nil {
					errs.Add(1)
					continue
				}
				l = append(l, time.Since(t0))
			}
			lats[w] = l
		}()
	}
	wg.Wait()
	return gathered(lats, int(errs.Load()), time.Since(start))
}

// gate releases everyone waiting on it at each open, and for good at
// close.
type gate struct {
	mu     sync.Mutex
	ch     chan struct{}
	closed bool
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

func (g *gate) open() {
	g.mu.Lock()
	close(g.ch)
	g.ch = make(chan struct{})
	g.mu.Unlock()
}

func (g *gate) close() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.ch)
	}
	g.mu.Unlock()
}

// wait blocks until the next open; false once the gate is closed.
func (g *gate) wait() bool {
	g.mu.Lock()
	ch, closed := g.ch, g.closed
	g.mu.Unlock()
	if closed {
		return false
	}
	<-ch
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.closed
}
