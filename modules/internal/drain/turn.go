package drain

import (
	"context"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/mailbox"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// fetchBatch is how many rows are read per query within a claim.
const fetchBatch = 100

// step tells a turn what to do after a row.
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

// turn is one mailbox's turn: its due rows, delivered in id order under
// the mailbox's lease, up to ClaimSize of them.
type turn struct {
	d    *Drainer
	name string
	// ctx is Run's: when it ends, the turn takes no new row.
	ctx context.Context
	// lease ends when the lease is lost, or when the stop grace after
	// ctx is over: deliveries and their recording run under it.
	lease context.Context
	// skip is set for skip-on-failure providers: the turn moves past a
	// failed row instead of stopping at it.
	skip bool
}

// drainMailbox takes the mailbox's lease and delivers its due rows in id
// order, up to ClaimSize of them. It reports whether it stopped only
// because the claim was used up (the mailbox should get another turn).
func (d *Drainer) drainMailbox(ctx, hard context.Context, name string) (more bool) {
	h, ok := d.leases.acquire(ctx, hard, name)
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
		d.leases.renew(leaseCtx, name, h, &lost, cancelLease)
	}()
	// keep is set when the turn ends with the mailbox drained (or its
	// claim used up): the lease is then held a little longer, so the next
	// capture for this mailbox costs no claim and no release.
	keep := false
	defer func() {
		cancelLease()
		<-renewDone
		d.leases.endTurn(hard, name, h, lost.Load(), keep && ctx.Err() == nil)
	}()

	m, _ := mailbox.Parse(name) // a legacy name still has its provider
	t := &turn{d: d, name: name, ctx: ctx, lease: leaseCtx, skip: d.skip[m.Provider]}
	more, keep = t.run()
	return more
}

// run delivers the turn's rows. It reports whether the claim was used up
// (more: the mailbox gets another turn), and whether the lease is worth
// keeping (keep: the turn drained the mailbox or used up its claim).
//
// Every page is read from the mailbox's head, not from the last id seen:
// ids are taken when a row is inserted but it becomes visible when its
// group commit ends, and commits (two flushers per instance, several
// instances) finish in either order. A cursor would step past a row that
// committed after the page was read, and that row, already acknowledged,
// would wait for the next turn behind rows stored after it. Rows this turn
// left in place and due (kept) are skipped, and asked for on top of the
// page, so that a page always brings up to fetchBatch new rows; every other
// outcome removes the row from the head (deleted, dead-lettered, moved, or
// rescheduled out of the due set) or ends the turn.
func (t *turn) run() (more, keep bool) {
	claim := t.d.cfg.ClaimSize
	var left map[int64]struct{}
	processed := 0
	for processed < claim {
		if t.over() {
			return false, false
		}
		want := min(claim-processed, fetchBatch) + len(left)
		rows, ok := t.page(want)
		if !ok {
			return false, false
		}
		for i := range rows {
			if t.over() {
				return false, false
			}
			p := &rows[i]
			if _, done := left[p.ID]; done {
				continue
			}
			if processed == claim {
				return true, true // the claim is used up: another turn
			}
			processed++
			switch t.handle(p) {
			case stop:
				return false, false
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
			return false, true
		}
	}
	return true, true
}

// over reports whether the turn must end now: the drainer stops, or the
// lease is gone.
func (t *turn) over() bool { return t.ctx.Err() != nil || t.lease.Err() != nil }

// page reads up to want rows from the mailbox's head (afterID 0: see run).
func (t *turn) page(want int) ([]store.Payload, bool) {
	d := t.d
	qctx, cancel := context.WithTimeout(t.lease, d.cfg.opTimeout())
	rows, err := d.st.NextPayloads(qctx, t.name, 0, d.cfg.Now(), t.skip, want)
	cancel()
	if err != nil {
		if !t.over() {
			d.warn.warn("next:"+t.name, "reading a mailbox failed", zap.String("mailbox", t.name), zap.Error(err))
		}
		return nil, false
	}
	return rows, true
}

// handle decides what to do with one row: wait, give it up without a
// request, or deliver it (attempt).
func (t *turn) handle(p *store.Payload) step {
	d := t.d
	if d.pauses.holds(t.name, p) {
		return stop // an operator paused the mailbox or its region: wait, spend nothing
	}
	now := d.cfg.Now()
	if !t.skip && p.ScheduleFor.After(now) {
		return stop // the head is in backoff: everything behind it waits
	}
	if p.ScheduleFor.After(now) {
		return next // skip-on-failure: not due yet, later rows may be
	}
	if p.Answered {
		// The region answered this callback payload already: only the
		// POST to its response_url is left, whatever the region's state.
		return t.deliverCallback(p)
	}
	base, ok := d.regions(p.Region)
	if !ok {
		d.warn.warn("region:"+t.name, "payload for an unknown region waits until the region is configured",
			zap.String("mailbox", t.name), zap.Int64("payload", p.ID), zap.String("region", p.Region))
		d.work.park(t.name, parkUnknownRegion)
		return stop
	}
	br := d.breakers.get(p.Region)
	if br.isOpen() {
		return stop // the region is unreachable: wait, spend nothing
	}
	if p.Attempts >= d.cfg.MaxAttempts {
		return t.deadLetter(p, store.ReasonAttemptsExceeded, OutcomeAttemptsExceeded, p.LastStatus, p.LastError)
	}
	if now.Sub(p.DateAdded) > d.cfg.MaxAge {
		return t.deadLetter(p, store.ReasonMaxAge, OutcomeMaxAge, p.LastStatus, p.LastError)
	}
	callback := p.DestinationType == store.DestinationCallback
	if callback {
		// Never run the region's action for an answer that could not be
		// delivered.
		if err := d.callbacks.check(t.lease, p.Provider, p.CallbackURL); err != nil {
			return t.deadLetter(p, store.ReasonCallbackRefused, OutcomeCallbackRefused, 0, err.Error())
		}
	}
	return t.attempt(p, base, br, callback)
}

// attempt sends the row to its region once and records what the result
// means, for the region's breaker and for the row.
func (t *turn) attempt(p *store.Payload, base *url.URL, br *breaker, callback bool) step {
	d := t.d
	start := time.Now()
	res, regionBody := d.sendToRegion(t.lease, base, p, callback)
	elapsed := time.Since(start)
	if res.kind != aborted {
		d.m.Duration.WithLabelValues(p.Region).Observe(elapsed.Seconds())
		d.breakers.record(p.Region, br, res.unreachable)
	}
	if callback && res.kind == delivered && res.status < 300 {
		if res.unreadable {
			// The region acted but its answer is lost: calling it again
			// would act twice. The operator decides (a replay calls the
			// region again, since no answer was kept).
			return t.deadLetter(p, store.ReasonCallbackFailed, OutcomeCallbackFailed, res.status, res.err)
		}
		return t.answered(p, res.status, regionBody)
	}

	switch res.kind {
	case aborted:
		d.m.Deliveries.WithLabelValues(p.Region, OutcomeAbandoned).Inc()
		return stop
	case delivered:
		return t.delivered(p, delivery{status: res.status, took: elapsed})
	case dropped:
		reason := store.ReasonDropped + strconv.Itoa(res.status)
		return t.deadLetter(p, reason, reason, res.status, res.err)
	}

	// A retryable failure. An unreachable-class failure is the region's,
	// not the payload's, unless the region answered other requests while
	// this one was failing: then it spends an attempt like a 500 does, so
	// a payload that always times out cannot retry for free forever.
	if res.unreachable && !br.answeredSince(start) {
		return t.deferred(p, res, br)
	}
	return t.failed(p, res)
}
