package drain

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// leaseKeeper holds this drainer's mailbox leases: one mailbox is drained
// by one drainer at a time, whichever instance it runs in.
type leaseKeeper struct {
	cfg  *Config
	st   Store
	log  *zap.Logger
	warn *limitedLog
	// queue is the dispatcher's: a mailbox whose lease is being released
	// is kept off the workers meanwhile (releaseIdle).
	queue *workQueue

	mu   sync.Mutex
	held map[string]*heldLease // leases this drainer owns
}

// heldLease is a mailbox lease this drainer owns. A lease outlives its
// turn for a short while (idleHold) when the turn drained the mailbox, so
// a busy mailbox costs one claim, not a claim and a release per capture.
// Fields are guarded by leaseKeeper.mu.
type heldLease struct {
	renewedAt time.Time // real time of the last successful claim or renewal
	lastUsed  time.Time // real time the last turn ended
}

func newLeaseKeeper(cfg *Config, st Store, log *zap.Logger, warn *limitedLog, queue *workQueue) *leaseKeeper {
	return &leaseKeeper{cfg: cfg, st: st, log: log, warn: warn, queue: queue, held: make(map[string]*heldLease)}
}

// idleHold is how long a drained mailbox's lease is kept. Its rows are
// invisible to every instance's backstop scan meanwhile (the lease is
// live), so it is short: a capture comes with a wake anyway, and a lost
// wake costs at most this plus a poll.
func (k *leaseKeeper) idleHold() time.Duration {
	return min(max(2*k.cfg.PollInterval, time.Second), k.cfg.Lease/3)
}

// maxIdle bounds the leases held between turns.
func (k *leaseKeeper) maxIdle() int { return 4 * k.cfg.Workers }

// acquire returns this drainer's lease on name: the held one when it is
// fresh, renewed when it is older than a third of the lease, or a new
// claim.
func (k *leaseKeeper) acquire(ctx, hard context.Context, name string) (*heldLease, bool) {
	lease := k.cfg.Lease
	k.mu.Lock()
	h := k.held[name]
	fresh := h != nil && time.Since(h.renewedAt) < lease/3
	k.mu.Unlock()
	if fresh {
		return h, true
	}
	octx, cancel := context.WithTimeout(hard, k.cfg.opTimeout())
	defer cancel()
	started := time.Now()
	now := k.cfg.Now()
	if h != nil {
		ok, err := k.st.RenewLease(octx, name, k.cfg.Owner, now.Add(lease))
		if err == nil && ok {
			k.mu.Lock()
			h.renewedAt = started
			k.mu.Unlock()
			return h, true
		}
		k.mu.Lock()
		delete(k.held, name)
		k.mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				k.warn.warn("claim", "renewing a mailbox lease failed", zap.String("mailbox", name), zap.Error(err))
			}
			return nil, false
		}
	}
	ok, err := k.st.ClaimMailbox(octx, name, k.cfg.Owner, now, now.Add(lease))
	if err != nil {
		if ctx.Err() == nil {
			k.warn.warn("claim", "claiming a mailbox failed", zap.String("mailbox", name), zap.Error(err))
		}
		return nil, false
	}
	if !ok {
		return nil, false
	}
	h = &heldLease{renewedAt: started}
	k.mu.Lock()
	k.held[name] = h
	k.mu.Unlock()
	return h, true
}

// renew extends the lease every third of its length while a turn runs.
// When the store says the lease is gone, or it cannot be renewed before it
// would lapse, it sets lost and cancels the turn, so that two drainers
// never deliver one mailbox at once for longer than a request already in
// flight.
func (k *leaseKeeper) renew(ctx context.Context, name string, h *heldLease, lost *atomic.Bool, cancel context.CancelFunc) {
	lease := k.cfg.Lease
	t := time.NewTicker(lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, rcancel := context.WithTimeout(ctx, lease/3)
		started := time.Now()
		ok, err := k.st.RenewLease(rctx, name, k.cfg.Owner, k.cfg.Now().Add(lease))
		rcancel()
		switch {
		case err == nil && ok:
			k.mu.Lock()
			h.renewedAt = started
			k.mu.Unlock()
		case err == nil && !ok:
			k.log.Warn("mailbox lease lost; abandoning its drain", zap.String("mailbox", name))
			lost.Store(true)
			cancel()
			return
		default:
			if ctx.Err() != nil {
				return
			}
			k.mu.Lock()
			left := lease - time.Since(h.renewedAt)
			k.mu.Unlock()
			if left < lease/3 {
				k.warn.warn("renew", "cannot renew a mailbox lease; abandoning its drain",
					zap.String("mailbox", name), zap.Error(err))
				lost.Store(true)
				cancel()
				return
			}
		}
	}
}

// endTurn keeps the lease for idleHold when keep is set, drops it when it
// was lost, and releases it otherwise (the mailbox stopped at a row in
// backoff, a paused region or an error: another instance may take it).
func (k *leaseKeeper) endTurn(hard context.Context, name string, h *heldLease, lost, keep bool) {
	k.mu.Lock()
	if lost || !keep {
		if k.held[name] == h {
			delete(k.held, name)
		}
	} else {
		h.lastUsed = time.Now()
	}
	k.mu.Unlock()
	if lost || keep {
		return
	}
	k.release(context.WithoutCancel(hard), name)
}

// release drops a lease, waiting at most a second (or until ctx ends).
func (k *leaseKeeper) release(ctx context.Context, name string) {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := k.st.ReleaseMailbox(rctx, name, k.cfg.Owner); err != nil {
		k.warn.warn("release", "releasing a mailbox lease failed; it lapses by itself",
			zap.String("mailbox", name), zap.Error(err))
	}
}

// run releases leases held past idleHold, and the oldest ones when more
// than maxIdle are held between turns, until ctx ends.
func (k *leaseKeeper) run(ctx context.Context) {
	hold := k.idleHold()
	t := time.NewTicker(max(hold/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.releaseIdle(context.WithoutCancel(ctx), hold, k.maxIdle())
	}
}

// releaseIdle releases idle leases older than hold, and more when over
// limit. A mailbox being released counts as active in the queue, so the
// dispatcher does not hand it to a worker until its lease is gone (a
// release landing after a fresh claim would delete the fresh lease).
func (k *leaseKeeper) releaseIdle(ctx context.Context, hold time.Duration, limit int) {
	out := k.takeIdle(hold, limit)
	if len(out) == 0 {
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, name := range out {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			k.release(ctx, name)
			k.queue.unreserve(name)
		}()
	}
	wg.Wait()
}

// takeIdle forgets the idle leases releaseIdle releases, oldest first,
// each reserved in the queue.
func (k *leaseKeeper) takeIdle(hold time.Duration, limit int) []string {
	type idle struct {
		name string
		used time.Time
	}
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	var idles []idle
	for name, h := range k.held {
		if !k.queue.isActive(name) {
			idles = append(idles, idle{name, h.lastUsed})
		}
	}
	sort.Slice(idles, func(i, j int) bool { return idles[i].used.Before(idles[j].used) })
	var out []string
	for i, it := range idles {
		if (now.Sub(it.used) >= hold || len(idles)-i > limit) && k.queue.reserve(it.name) {
			out = append(out, it.name)
			delete(k.held, it.name)
		}
	}
	return out
}
