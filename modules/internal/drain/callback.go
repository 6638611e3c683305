package drain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
	"github.com/sentrysilo/caddy-silo/modules/internal/mailbox"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
)

// Callback payloads (§3.6) are the Slack and Discord interactions whose
// region answer is POSTed to a response_url. They go through three steps,
// and the region, whose action (resolve an issue, link an identity, ...)
// is not idempotent, is called at most once per payload:
//
//  1. Before the region is called, the response_url is checked
//     (callbackPolicy.check). One the drainer may never POST to becomes a
//     dead letter "callback_refused" and nothing is sent anywhere: calling
//     the region would run its action for an answer with nowhere to go.
//  2. The region answers 2xx: its answer is stored with the row
//     (store.RecordRegionAnswer) before anything is POSTed, and the row
//     moves to a mailbox of its own (callbackMailbox). From then on a
//     failed POST, a crash or a replay of the dead letter re-POSTs that
//     answer and never calls the region again; and the row no longer holds
//     the rows behind it in its strictly ordered mailbox (the workspace's
//     next events), nor does the region breaker hold it: its target is
//     Slack or Discord, not the region.
//  3. The answer is POSTed to the response_url, CallbackAttempts times at
//     most, CallbackRetryDelay apart; then the row is a dead letter
//     "callback_failed" that keeps the answer.
//
// The only window left is between the region's answer and the commit of
// step 2 (a crash or a store error there): the row is then delivered again
// later, at least once, as every payload is.

// Callback retry defaults. Sentry's callback task is Retry(times=2,
// delay=5): three POSTs, 5 s apart. A durable queue could retry for
// longer, but the POST is worthless soon after: a Slack response_url
// expires after 30 minutes (and 5 uses), a Discord interaction token after
// 15. What is worth retrying clears within seconds (Discord answers 404
// until the deferred answer of the interaction exists, a Slack 5xx or
// 429), so Sentry's bounds are kept.
const (
	DefaultCallbackAttempts   = 3
	DefaultCallbackRetryDelay = 5 * time.Second
	// maxCallbackRetryAfter caps a Retry-After from the response_url
	// host: waiting longer would outlive Discord's 15-minute token for
	// one retry.
	maxCallbackRetryAfter = time.Minute
)

// callbackSubject prefixes the subject of callback mailboxes. The
// answered row of payload <id> (mailbox provider:region:<subject>[:bucket])
// moves to provider:region:callback-<id>, built by mailbox.Name: a
// mailbox of its own, which drains without waiting for any other and
// holds nothing else. Subjects of captured mailboxes are integration or
// organization ids (digits), so no captured mailbox has this form; ids
// are never reused, so neither are these names. The provider and region
// parts stay those of the payload (the admin listing, metrics and the
// skip-on-failure rule read them).
const callbackSubject = "callback-"

// callbackMailbox names the mailbox of an answered callback row.
func callbackMailbox(p *store.Payload) string {
	return mailbox.Name(p.Provider, p.Region, callbackSubject+strconv.FormatInt(p.ID, 10), -1)
}

// isCallback reports whether a parsed mailbox name is a callback
// mailbox's.
func isCallback(m mailbox.Parsed) bool {
	return m.Bucket < 0 && m.EventType == "" && strings.HasPrefix(m.Subject, callbackSubject)
}

// answered records the region's 2xx answer to a callback payload and
// moves the row to its callback mailbox (step 2), then wakes that mailbox
// for the POST. The payload's old mailbox goes on with its next row.
func (t *turn) answered(p *store.Payload, status int, answer []byte) step {
	d := t.d
	box := callbackMailbox(p)
	octx, cancel := t.opContext()
	err := d.st.RecordRegionAnswer(octx, p.ID, box, answer, status, d.cfg.Now())
	cancel()
	if err != nil {
		return t.recordFailed(p, "recording the region's answer to a callback", err)
	}
	d.m.Deliveries.WithLabelValues(p.Region, OutcomeAnswered).Inc()
	if c := d.log.Check(zap.DebugLevel, "region answered a callback payload; its answer waits for the response_url"); c != nil {
		c.Write(zap.String("mailbox", t.name), zap.Int64("payload", p.ID), zap.String("region", p.Region),
			zap.String("callback_mailbox", box))
	}
	d.Wake(box)
	return next
}

// deliverCallback POSTs an answered row's answer to its response_url
// (step 3). It never calls the region.
func (t *turn) deliverCallback(p *store.Payload) step {
	d := t.d
	if p.Attempts >= d.cfg.CallbackAttempts {
		return t.deadLetter(p, store.ReasonCallbackFailed, OutcomeCallbackFailed, p.LastStatus, p.LastError)
	}
	// The policy may have changed since the region answered (a reload
	// that removed a callback host).
	if err := d.callbacks.check(t.lease, p.Provider, p.CallbackURL); err != nil {
		return t.deadLetter(p, store.ReasonCallbackRefused, OutcomeCallbackRefused, 0, err.Error())
	}
	res := d.postCallback(t.lease, p, p.RegionAnswer)
	switch res.kind {
	case aborted:
		d.m.Deliveries.WithLabelValues(p.Region, OutcomeAbandoned).Inc()
		return stop
	case delivered:
		octx, cancel := t.opContext()
		err := d.st.DeletePayload(octx, p.ID)
		cancel()
		if err != nil {
			return t.recordFailed(p, "deleting a delivered callback", err)
		}
		d.m.Deliveries.WithLabelValues(p.Region, OutcomeCallbackDelivered).Inc()
		d.m.Lag.WithLabelValues(p.Region).Observe(d.cfg.Now().Sub(p.DateAdded).Seconds())
		return next
	case refusedKind:
		return t.giveUpCallback(p, store.ReasonCallbackRefused, OutcomeCallbackRefused, res)
	case dropped:
		return t.giveUpCallback(p, store.ReasonCallbackFailed, OutcomeCallbackFailed, res)
	}
	attempts := p.Attempts + 1
	if attempts >= d.cfg.CallbackAttempts {
		return t.giveUpCallback(p, store.ReasonCallbackFailed, OutcomeCallbackFailed, res)
	}
	delay := d.cfg.CallbackRetryDelay
	if res.retryAfter > delay {
		delay = min(res.retryAfter, maxCallbackRetryAfter)
	}
	at := d.cfg.Now().Add(delay)
	octx, cancel := t.opContext()
	err := d.st.ReschedulePayload(octx, p.ID, attempts, at, res.status, res.err)
	cancel()
	if err != nil {
		return t.recordFailed(p, "rescheduling a callback", err)
	}
	d.m.Deliveries.WithLabelValues(p.Region, OutcomeCallbackRetry).Inc()
	d.log.Info("response_url POST failed; retrying only the POST, the region's answer is kept",
		zap.String("mailbox", t.name), zap.Int64("payload", p.ID), zap.String("region", p.Region),
		zap.Int("attempts", attempts), zap.Int("status", res.status), zap.String("error", res.err),
		zap.Time("next_attempt_at", at))
	return stop
}

// giveUpCallback moves an answered row to the dead letters after a POST.
// The POST is counted first, so that the dead letter's attempts is the
// number of POSTs made; if the move then fails, the row waits with that
// count and the next turn gives it up without POSTing again when the
// budget is spent.
func (t *turn) giveUpCallback(p *store.Payload, reason, outcome string, res result) step {
	octx, cancel := t.opContext()
	err := t.d.st.ReschedulePayload(octx, p.ID, p.Attempts+1, p.ScheduleFor, res.status, res.err)
	cancel()
	if err != nil {
		return t.recordFailed(p, "recording a failed callback", err)
	}
	p.Attempts++
	return t.deadLetter(p, reason, outcome, res.status, res.err)
}

// postCallback POSTs what the region answered to the payload's
// response_url (§3.6): Slack gets the body as is, Discord its "data".
func (d *Drainer) postCallback(ctx context.Context, p *store.Payload, regionBody []byte) result {
	body, err := webhooks.CallbackBody(p.Provider, regionBody)
	if err != nil {
		// The answer will not change: retrying cannot help.
		return result{kind: dropped, err: err.Error()}
	}
	rctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, p.CallbackURL, bytes.NewReader(body))
	if err != nil {
		return result{kind: dropped, err: "response_url request: " + safeError(err)}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.callbackClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return result{kind: aborted, err: "stopped"}
		}
		if errors.Is(err, httpx.ErrRefused) {
			return result{kind: refusedKind, err: errCallbackRefused.Error() + ": " + safeError(err)}
		}
		return result{kind: retry, err: "response_url: " + transportError(err, rctx)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, discardBody))
	code := resp.StatusCode
	res := result{status: code, err: fmt.Sprintf("response_url answered %d", code)}
	switch {
	case code >= 200 && code < 300:
		res.kind, res.err = delivered, ""
	case code == 404 && p.Provider == "discord":
		// Discord answers 404 until the interaction's original answer
		// exists: "Discord hook is not ready", retried.
		res.kind = retry
		res.err += " (discord hook not ready)"
	case code == 429 || code >= 500:
		res.kind = retry
		if code == 429 || code == 503 {
			res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), d.cfg.Now())
		}
	default:
		// 4xx (an expired or used-up response_url, a bad token) and 3xx
		// (redirects are not followed: they may lead off the callback
		// hosts) do not get better.
		res.kind = dropped
	}
	return res
}
