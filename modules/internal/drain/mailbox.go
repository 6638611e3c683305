package drain

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// fetchBatch is how many rows are read per query within a claim.
const fetchBatch = 100

// step tells drainMailbox what to do after a row.
type step int

const (
	next step = iota // go on with the next row
	stop             // end this mailbox's turn; the rows stay as they are
	// kept: go on with the next row; this one stays in place and due (a
	// skip-on-failure row deferred while its region looked unreachable).
	kept
)

// parkUnknownRegion is how long a mailbox whose region is not configured
// is set aside before it is looked at again.
const parkUnknownRegion = time.Minute

func (d *Drainer) currentHardCtx() context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hardCtx
}

// drainMailbox takes the mailbox's lease and delivers its due rows in id
// order, up to ClaimSize of them. It reports whether it stopped only
// because the claim was used up (the mailbox should get another turn).
func (d *Drainer) drainMailbox(ctx context.Context, name string) (more bool) {
	hard := d.currentHardCtx()
	h, ok := d.acquire(ctx, hard, name)
	if !ok {
		return false // another drainer holds it (it was woken too), or the store failed
	}

	// The lease is renewed in the background while rows are delivered;
	// losing it cancels leaseCtx, which abandons the delivery in flight.
	leaseCtx, cancelLease := context.WithCancel(hard)
	var lost atomic.Bool
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		d.renewLease(leaseCtx, name, h, &lost, cancelLease)
	}()
	// keep is set when the turn ends with the mailbox drained (or its
	// claim used up): the lease is then held a little longer, so the next
	// capture for this mailbox costs no claim and no release.
	keep := false
	defer func() {
		cancelLease()
		<-renewDone
		d.endTurn(hard, name, h, lost.Load(), keep && ctx.Err() == nil)
	}()

	skip := d.skip[providerOf(name)]
	// Every page is read from the mailbox's head, not from the last id
	// seen: ids are taken when a row is inserted but it becomes visible
	// when its group commit ends, and commits (two flushers per instance,
	// several instances) finish in either order. A cursor would step past
	// a row that committed after the page was read, and that row, already
	// acknowledged, would wait for the next turn behind rows stored after
	// it. Rows this turn left in place and due (kept) are skipped, and
	// asked for on top of the page, so that a page always brings up to
	// fetchBatch new rows; every other outcome removes the row from the
	// head (deleted, dead-lettered, moved, or rescheduled out of the due
	// set) or ends the turn.
	var left map[int64]struct{}
	processed := 0
	for processed < d.cfg.ClaimSize {
		if ctx.Err() != nil || leaseCtx.Err() != nil {
			return false
		}
		limit := min(d.cfg.ClaimSize-processed, fetchBatch)
		want := limit + len(left)
		qctx, cancel := context.WithTimeout(leaseCtx, d.opTimeout())
		rows, err := d.st.NextPayloads(qctx, name, 0, d.cfg.Now(), skip, want)
		cancel()
		if err != nil {
			if ctx.Err() == nil && leaseCtx.Err() == nil {
				d.logLimited("next:"+name, "reading a mailbox failed", zap.String("mailbox", name), zap.Error(err))
			}
			return false
		}
		for i := range rows {
			if ctx.Err() != nil || leaseCtx.Err() != nil {
				return false
			}
			p := &rows[i]
			if _, done := left[p.ID]; done {
				continue
			}
			if processed == d.cfg.ClaimSize {
				keep = true
				return true // the claim is used up: another turn
			}
			processed++
			switch d.handle(ctx, leaseCtx, name, p, skip) {
			case stop:
				return false
			case kept:
				if left == nil {
					left = make(map[int64]struct{})
				}
				left[p.ID] = struct{}{}
			}
		}
		if len(rows) < want {
			// Drained. Rows stored after the query come with a wake,
			// which marks this mailbox for another turn.
			keep = true
			return false
		}
	}
	keep = true
	return true
}

// renewLease extends the lease every third of its length. When the store
// says the lease is gone, or it cannot be renewed before it would lapse,
// it cancels the drain so that two drainers never deliver one mailbox at
// once for longer than a request already in flight.
func (d *Drainer) renewLease(ctx context.Context, name string, h *heldLease, lost *atomic.Bool, cancel context.CancelFunc) {
	lease := d.cfg.Lease
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
		ok, err := d.st.RenewLease(rctx, name, d.cfg.Owner, d.cfg.Now().Add(lease))
		rcancel()
		switch {
		case err == nil && ok:
			d.mu.Lock()
			h.renewedAt = started
			d.mu.Unlock()
		case err == nil && !ok:
			d.log.Warn("mailbox lease lost; abandoning its drain", zap.String("mailbox", name))
			lost.Store(true)
			cancel()
			return
		default:
			if ctx.Err() != nil {
				return
			}
			d.mu.Lock()
			left := lease - time.Since(h.renewedAt)
			d.mu.Unlock()
			if left < lease/3 {
				d.logLimited("renew", "cannot renew a mailbox lease; abandoning its drain",
					zap.String("mailbox", name), zap.Error(err))
				lost.Store(true)
				cancel()
				return
			}
		}
	}
}

// handle delivers one row and records the outcome.
func (d *Drainer) handle(ctx, leaseCtx context.Context, name string, p *store.Payload, skip bool) step {
	now := d.cfg.Now()
	if !skip && p.ScheduleFor.After(now) {
		return stop // the head is in backoff: everything behind it waits
	}
	if p.ScheduleFor.After(now) {
		return next // skip-on-failure: not due yet, later rows may be
	}
	if p.Answered {
		// The region answered this callback payload already: only the
		// POST to its response_url is left, whatever the region's state.
		return d.deliverCallback(leaseCtx, name, p)
	}
	base, ok := d.regions(p.Region)
	if !ok {
		d.logLimited("region:"+name, "payload for an unknown region waits until the region is configured",
			zap.String("mailbox", name), zap.Int64("payload", p.ID), zap.String("region", p.Region))
		d.park(name, parkUnknownRegion)
		return stop
	}
	br := d.breaker(p.Region)
	if br.isOpen() {
		return stop // the region is unreachable: wait, spend nothing
	}
	if p.Attempts >= d.cfg.MaxAttempts {
		return d.deadLetter(leaseCtx, name, p, store.ReasonAttemptsExceeded, OutcomeAttemptsExceeded, p.LastStatus, p.LastError)
	}
	if now.Sub(p.DateAdded) > d.cfg.MaxAge {
		return d.deadLetter(leaseCtx, name, p, store.ReasonMaxAge, OutcomeMaxAge, p.LastStatus, p.LastError)
	}

	callback := p.DestinationType == store.DestinationCallback
	if callback {
		// Never run the region's action for an answer that could not be
		// delivered.
		if err := d.callbacks.check(leaseCtx, p.Provider, p.CallbackURL); err != nil {
			return d.deadLetter(leaseCtx, name, p, store.ReasonCallbackRefused, OutcomeCallbackRefused, 0, err.Error())
		}
	}

	start := time.Now()
	res, regionBody := d.sendToRegion(leaseCtx, base, p, callback)
	elapsed := time.Since(start)
	if res.kind != aborted {
		d.m.Duration.WithLabelValues(p.Region).Observe(elapsed.Seconds())
		if res.unreachable {
			if br.failed(time.Now()) {
				d.breakerOpened(p.Region)
			}
		} else if br.answered(time.Now()) {
			d.breakerClosed(p.Region)
		}
	}
	if callback && res.kind == delivered && res.status < 300 {
		if res.unreadable {
			// The region acted but its answer is lost: calling it again
			// would act twice. The operator decides (a replay calls the
			// region again, since no answer was kept).
			return d.deadLetter(leaseCtx, name, p, store.ReasonCallbackFailed, OutcomeCallbackFailed, res.status, res.err)
		}
		return d.answered(leaseCtx, name, p, res.status, regionBody)
	}

	switch res.kind {
	case aborted:
		d.m.Deliveries.WithLabelValues(p.Region, OutcomeAbandoned).Inc()
		return stop
	case delivered:
		return d.delivered(leaseCtx, name, p)
	case dropped:
		reason := store.ReasonDropped + strconv.Itoa(res.status)
		return d.deadLetter(leaseCtx, name, p, reason, reason, res.status, res.err)
	}

	// A retryable failure. An unreachable-class failure is the region's,
	// not the payload's, unless the region answered other requests while
	// this one was failing: then it spends an attempt like a 500 does, so
	// a payload that always times out cannot retry for free forever.
	if res.unreachable && !br.answeredSince(start) {
		return d.deferred(leaseCtx, name, p, res, skip, br)
	}
	return d.failed(leaseCtx, name, p, res, skip)
}

// delivered deletes a delivered row.
func (d *Drainer) delivered(ctx context.Context, name string, p *store.Payload) step {
	octx, cancel := context.WithTimeout(ctx, d.opTimeout())
	err := d.st.DeletePayload(octx, p.ID)
	cancel()
	if err != nil {
		return d.recordFailed(ctx, name, p, "deleting a delivered payload", err)
	}
	d.m.Deliveries.WithLabelValues(p.Region, OutcomeDelivered).Inc()
	d.m.Lag.WithLabelValues(p.Region).Observe(d.cfg.Now().Sub(p.DateAdded).Seconds())
	if c := d.log.Check(zap.DebugLevel, "payload delivered"); c != nil {
		c.Write(zap.String("mailbox", name), zap.Int64("payload", p.ID), zap.String("region", p.Region))
	}
	return next
}

// deadLetter moves a row to the dead letters; the mailbox goes on.
func (d *Drainer) deadLetter(ctx context.Context, name string, p *store.Payload, reason, outcome string, status int, lastErr string) step {
	octx, cancel := context.WithTimeout(ctx, d.opTimeout())
	err := d.st.DeadLetterPayload(octx, p.ID, reason, status, lastErr, d.cfg.Now())
	cancel()
	if err != nil {
		return d.recordFailed(ctx, name, p, "moving a payload to the dead letters", err)
	}
	d.m.Deliveries.WithLabelValues(p.Region, outcome).Inc()
	d.log.Warn("payload moved to the dead letters",
		zap.String("mailbox", name), zap.Int64("payload", p.ID), zap.String("region", p.Region),
		zap.String("reason", reason), zap.Int("attempts", p.Attempts), zap.Int("last_status", status))
	return next
}

// failed charges an attempt: the row is rescheduled with backoff, or goes
// to the dead letters when it has had its last attempt.
func (d *Drainer) failed(ctx context.Context, name string, p *store.Payload, res result, skip bool) step {
	attempts := p.Attempts + 1
	if attempts >= d.cfg.MaxAttempts {
		if d.deadLetter(ctx, name, p, store.ReasonAttemptsExceeded, OutcomeAttemptsExceeded, res.status, res.err) == stop {
			return stop
		}
		return next
	}
	now := d.cfg.Now()
	at := now.Add(d.cfg.retryDelay(attempts, res.retryAfter))
	if at.Before(p.ScheduleFor) {
		at = p.ScheduleFor
	}
	octx, cancel := context.WithTimeout(ctx, d.opTimeout())
	err := d.st.ReschedulePayload(octx, p.ID, attempts, at, res.status, res.err)
	cancel()
	if err != nil {
		return d.recordFailed(ctx, name, p, "rescheduling a payload", err)
	}
	d.m.Deliveries.WithLabelValues(p.Region, OutcomeRetry).Inc()
	d.log.Info("payload delivery failed; retrying later",
		zap.String("mailbox", name), zap.Int64("payload", p.ID), zap.String("region", p.Region),
		zap.Int("attempts", attempts), zap.Int("status", res.status), zap.String("error", res.err),
		zap.Time("next_attempt_at", at))
	if skip {
		return next
	}
	return stop
}

// deferred records a failure that spends no attempt (the region looks
// unreachable). The row stays due, or waits for a Retry-After the region
// sent; the breaker, once open, keeps the mailbox waiting.
func (d *Drainer) deferred(ctx context.Context, name string, p *store.Payload, res result, skip bool, br *breaker) step {
	at := p.ScheduleFor
	if res.retryAfter > 0 {
		ra := min(res.retryAfter, d.cfg.BackoffCap)
		if t := d.cfg.Now().Add(ra); t.After(at) {
			at = t
		}
	}
	octx, cancel := context.WithTimeout(ctx, d.opTimeout())
	err := d.st.ReschedulePayload(octx, p.ID, p.Attempts, at, res.status, res.err)
	cancel()
	if err != nil {
		return d.recordFailed(ctx, name, p, "recording a failed delivery", err)
	}
	d.m.Deliveries.WithLabelValues(p.Region, OutcomeDeferred).Inc()
	if c := d.log.Check(zap.DebugLevel, "region unreachable; payload waits without spending an attempt"); c != nil {
		c.Write(zap.String("mailbox", name), zap.Int64("payload", p.ID), zap.String("region", p.Region),
			zap.Int("status", res.status), zap.String("error", res.err))
	}
	if skip && !br.isOpen() {
		return kept
	}
	return stop
}

// recordFailed handles a store error while recording an outcome: the row
// stays as it was (it is delivered again later: at least once), and the
// mailbox's turn ends. ErrNotFound means another drainer or an operator
// took the row, so this drainer no longer owns the mailbox.
func (d *Drainer) recordFailed(ctx context.Context, name string, p *store.Payload, what string, err error) step {
	if errors.Is(err, store.ErrNotFound) {
		d.log.Warn("payload vanished while "+what+"; ending this mailbox's turn",
			zap.String("mailbox", name), zap.Int64("payload", p.ID))
		return stop
	}
	if ctx.Err() == nil {
		d.logLimited("record", what+" failed; the payload will be delivered again",
			zap.String("mailbox", name), zap.Int64("payload", p.ID), zap.Error(err))
	}
	return stop
}

func (d *Drainer) breakerOpened(region string) {
	d.m.BreakerOpen.WithLabelValues(region).Set(1)
	d.log.Warn("region unreachable: deliveries paused, no attempts spent",
		zap.String("region", region), zap.Int("consecutive_failures", d.cfg.BreakerFailures),
		zap.Duration("probe_interval", d.cfg.BreakerProbeInterval))
}

func (d *Drainer) breakerClosed(region string) {
	d.m.BreakerOpen.WithLabelValues(region).Set(0)
	d.log.Info("region reachable again: deliveries resumed", zap.String("region", region))
	d.Wake() // its mailboxes waited: look at all of them now
}
