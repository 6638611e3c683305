package drain

import (
	"context"
	"errors"

	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// The outcomes of a row, recorded in the store under the turn's lease
// context and counted in caddy_sentry_deliveries_total.

// opContext bounds one store operation of the turn (Config.opTimeout).
func (t *turn) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.lease, t.d.cfg.opTimeout())
}

// delivered deletes a delivered row (or moves it to the history).
func (t *turn) delivered(p *store.Payload, dv delivery) step {
	d := t.d
	octx, cancel := t.opContext()
	err := t.removeDelivered(octx, p, dv)
	cancel()
	if err != nil {
		return t.recordFailed(p, "deleting a delivered payload", err)
	}
	d.m.Deliveries.WithLabelValues(p.Region, OutcomeDelivered).Inc()
	d.m.Lag.WithLabelValues(p.Region).Observe(d.cfg.Now().Sub(p.DateAdded).Seconds())
	if c := d.log.Check(zap.DebugLevel, "payload delivered"); c != nil {
		c.Write(zap.String("mailbox", t.name), zap.Int64("payload", p.ID), zap.String("region", p.Region))
	}
	return next
}

// deadLetter moves a row to the dead letters; the mailbox goes on.
func (t *turn) deadLetter(p *store.Payload, reason, outcome string, status int, lastErr string) step {
	d := t.d
	octx, cancel := t.opContext()
	err := d.st.DeadLetterPayload(octx, p.ID, reason, status, lastErr, d.cfg.Now())
	cancel()
	if err != nil {
		return t.recordFailed(p, "moving a payload to the dead letters", err)
	}
	d.m.Deliveries.WithLabelValues(p.Region, outcome).Inc()
	d.log.Warn("payload moved to the dead letters",
		zap.String("mailbox", t.name), zap.Int64("payload", p.ID), zap.String("region", p.Region),
		zap.String("reason", reason), zap.Int("attempts", p.Attempts), zap.Int("last_status", status))
	return next
}

// failed charges an attempt: the row is rescheduled with backoff, or goes
// to the dead letters when it has had its last attempt.
func (t *turn) failed(p *store.Payload, res result) step {
	d := t.d
	attempts := p.Attempts + 1
	if attempts >= d.cfg.MaxAttempts {
		if t.deadLetter(p, store.ReasonAttemptsExceeded, OutcomeAttemptsExceeded, res.status, res.err) == stop {
			return stop
		}
		return next
	}
	now := d.cfg.Now()
	at := now.Add(d.cfg.retryDelay(attempts, res.retryAfter))
	if at.Before(p.ScheduleFor) {
		at = p.ScheduleFor
	}
	octx, cancel := t.opContext()
	err := d.st.ReschedulePayload(octx, p.ID, attempts, at, res.status, res.err)
	cancel()
	if err != nil {
		return t.recordFailed(p, "rescheduling a payload", err)
	}
	d.m.Deliveries.WithLabelValues(p.Region, OutcomeRetry).Inc()
	d.log.Info("payload delivery failed; retrying later",
		zap.String("mailbox", t.name), zap.Int64("payload", p.ID), zap.String("region", p.Region),
		zap.Int("attempts", attempts), zap.Int("status", res.status), zap.String("error", res.err),
		zap.Time("next_attempt_at", at))
	if t.skip {
		return next
	}
	return stop
}

// deferred records a failure that spends no attempt (the region looks
// unreachable). The row stays due, or waits for a Retry-After the region
// sent; the breaker, once open, keeps the mailbox waiting.
func (t *turn) deferred(p *store.Payload, res result, br *breaker) step {
	d := t.d
	at := p.ScheduleFor
	if res.retryAfter > 0 {
		ra := min(res.retryAfter, d.cfg.BackoffCap)
		if until := d.cfg.Now().Add(ra); until.After(at) {
			at = until
		}
	}
	octx, cancel := t.opContext()
	err := d.st.ReschedulePayload(octx, p.ID, p.Attempts, at, res.status, res.err)
	cancel()
	if err != nil {
		return t.recordFailed(p, "recording a failed delivery", err)
	}
	d.m.Deliveries.WithLabelValues(p.Region, OutcomeDeferred).Inc()
	if c := d.log.Check(zap.DebugLevel, "region unreachable; payload waits without spending an attempt"); c != nil {
		c.Write(zap.String("mailbox", t.name), zap.Int64("payload", p.ID), zap.String("region", p.Region),
			zap.Int("status", res.status), zap.String("error", res.err))
	}
	if t.skip && !br.isOpen() {
		return kept
	}
	return stop
}

// recordFailed handles a store error while recording an outcome: the row
// stays as it was (it is delivered again later: at least once), and the
// mailbox's turn ends. ErrNotFound means another drainer or an operator
// took the row, so this drainer no longer owns the mailbox.
func (t *turn) recordFailed(p *store.Payload, what string, err error) step {
	if errors.Is(err, store.ErrNotFound) {
		t.d.log.Warn("payload vanished while "+what+"; ending this mailbox's turn",
			zap.String("mailbox", t.name), zap.Int64("payload", p.ID))
		return stop
	}
	if t.lease.Err() == nil {
		t.d.warn.warn("record", what+" failed; the payload will be delivered again",
			zap.String("mailbox", t.name), zap.Int64("payload", p.ID), zap.Error(err))
	}
	return stop
}
