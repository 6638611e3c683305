package drain

import (
	"context"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
)

// heldLease is a mailbox lease this drainer owns. A lease outlives its
// turn for a short while (idleHold) when the turn drained the mailbox, so
// a busy mailbox costs one claim, not a claim and a release per capture.
// Fields are guarded by Drainer.mu.
type heldLease struct {
	renewedAt time.Time // real time of the last successful claim or renewal
	lastUsed  time.Time // real time the last turn ended
}

// idleHold is how long a drained mailbox's lease is kept. Its rows are
// invisible to every instance's backstop scan meanwhile (the lease is
// live), so it is short: a capture comes with a wake anyway, and a lost
// wake costs at most this plus a poll.
func (d *Drainer) idleHold() time.Duration {
	return min(max(2*d.cfg.PollInterval, time.Second), d.cfg.Lease/3)
}

// maxIdleLeases bounds the leases held between turns.
func (d *Drainer) maxIdleLeases() int { return 4 * d.cfg.Workers }

// acquire returns this drainer's lease on name: the held one when it is
// fresh, renewed when it is older than a third of the lease, or a new
// claim.
func (d *Drainer) acquire(ctx, hard context.Context, name string) (*heldLease, bool) {
	lease := d.cfg.Lease
	d.mu.Lock()
	h := d.held[name]
	fresh := h != nil && time.Since(h.renewedAt) < lease/3
	d.mu.Unlock()
	if fresh {
		return h, true
	}
	octx, cancel := context.WithTimeout(hard, d.opTimeout())
	defer cancel()
	started := time.Now()
	now := d.cfg.Now()
	if h != nil {
		ok, err := d.st.RenewLease(octx, name, d.cfg.Owner, now.Add(lease))
		if err == nil && ok {
			d.mu.Lock()
			h.renewedAt = started
			d.mu.Unlock()
			return h, true
		}
		d.mu.Lock()
		delete(d.held, name)
		d.mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				d.logLimited("claim", "renewing a mailbox lease failed", zap.String("mailbox", name), zap.Error(err))
			}
			return nil, false
		}
	}
	ok, err := d.st.ClaimMailbox(octx, name, d.cfg.Owner, now, now.Add(lease))
	if err != nil {
		if ctx.Err() == nil {
			d.logLimited("claim", "claiming a mailbox failed", zap.String("mailbox", name), zap.Error(err))
		}
		return nil, false
	}
	if !ok {
		return nil, false
	}
	h = &heldLease{renewedAt: started}
	d.mu.Lock()
	d.held[name] = h
	d.mu.Unlock()
	return h, true
}

// endTurn keeps the lease for idleHold when keep is set, drops it when it
// was lost, and releases it otherwise (the mailbox stopped at a row in
// backoff, a paused region or an error: another instance may take it).
func (d *Drainer) endTurn(hard context.Context, name string, h *heldLease, lost, keep bool) {
	d.mu.Lock()
	if lost || !keep {
		if d.held[name] == h {
			delete(d.held, name)
		}
	} else {
		h.lastUsed = time.Now()
	}
	d.mu.Unlock()
	if lost || keep {
		return
	}
	d.release(context.WithoutCancel(hard), name)
}

// release drops a lease, waiting at most a second (or until ctx ends).
func (d *Drainer) release(ctx context.Context, name string) {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := d.st.ReleaseMailbox(rctx, name, d.cfg.Owner); err != nil {
		d.logLimited("release", "releasing a mailbox lease failed; it lapses by itself",
			zap.String("mailbox", name), zap.Error(err))
	}
}

// leaseLoop releases leases held past idleHold, and the oldest ones when
// more than maxIdleLeases are held between turns.
func (d *Drainer) leaseLoop(ctx context.Context) {
	hold := d.idleHold()
	t := time.NewTicker(max(hold/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.releaseIdle(context.WithoutCancel(ctx), hold, d.maxIdleLeases())
	}
}

// releaseIdle releases idle leases older than hold, and more when over
// limit. A mailbox being released counts as active, so the dispatcher
// does not hand it to a worker until its lease is gone (a release landing
// after a fresh claim would delete the fresh lease).
func (d *Drainer) releaseIdle(ctx context.Context, hold time.Duration, limit int) {
	type idle struct {
		name string
		used time.Time
	}
	now := time.Now()
	var idles []idle
	d.mu.Lock()
	for name, h := range d.held {
		if _, busy := d.active[name]; !busy {
			idles = append(idles, idle{name, h.lastUsed})
		}
	}
	sort.Slice(idles, func(i, j int) bool { return idles[i].used.Before(idles[j].used) })
	var out []string
	for i, it := range idles {
		if now.Sub(it.used) >= hold || len(idles)-i > limit {
			out = append(out, it.name)
			delete(d.held, it.name)
			d.active[it.name] = false
		}
	}
	d.mu.Unlock()
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
			d.release(ctx, name)
			d.mu.Lock()
			dirty := d.active[name]
			delete(d.active, name)
			if dirty {
				d.enqueueLocked(name)
			}
			d.mu.Unlock()
			if dirty {
				d.signal()
			}
		}()
	}
	wg.Wait()
}
