package drain

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// recordingStore is the Store as the drainer's turns see it: the records
// of what a region already received (a delivered row's deletion, a dead
// letter after the region's final answer, a callback's region answer) are
// retried until the database takes them, instead of failing.
//
// A record that does not reach the database leaves the row in its
// mailbox, and the row would be sent to its region again: a failover
// between the region's answer and the DELETE's COMMIT, or a COMMIT whose
// answer was lost, made every row in flight arrive twice. Retrying here,
// on the worker that delivered the row, keeps the mailbox busy on this
// instance (no other worker of it takes the mailbox) and the turn goes no
// further until the record is in, so at most one row per worker waits
// this way. Other instances are kept off the mailbox by its lease, which
// lapses by itself (a turn that cannot renew it gives it up without
// releasing it), and, after a failover or crash that emptied the lease
// table, by ClaimMailbox claiming nothing for one lease length: longer
// than the retry interval here (recordRetryCap), so the record is in
// before anyone else can read the row.
//
// Other writes (a failed attempt's reschedule) are not retried: the row
// stays as it was and is attempted again, which sends nothing twice that
// the region took.
type recordingStore struct {
	Store
	warn *limitedLog
	log  *zap.Logger
	// stop ends the retries (Run's hard context, once Run started): a
	// record still not in then is left, and the row is delivered again
	// by whichever drainer takes the mailbox next (at least once).
	stop    atomic.Pointer[context.Context]
	timeout time.Duration // per try (Config.opTimeout)
}

// recordRetryCap bounds the wait between two tries of a record: the lease
// length after a wiped lease table must be longer (leases are seconds;
// DefaultLease is 15s).
const recordRetryCap = time.Second

func newRecordingStore(st Store, cfg *Config, log *zap.Logger, warn *limitedLog) *recordingStore {
	return &recordingStore{Store: st, warn: warn, log: log, timeout: cfg.opTimeout()}
}

// until makes the retries end with ctx.
func (r *recordingStore) until(ctx context.Context) { r.stop.Store(&ctx) }

func (r *recordingStore) DeletePayload(ctx context.Context, id int64) error {
	return r.record(ctx, "deleting a delivered payload", id, true, func(ctx context.Context) error {
		return r.Store.DeletePayload(ctx, id)
	})
}

func (r *recordingStore) DeadLetterPayload(ctx context.Context, id int64, reason string, lastStatus int, lastError string, now time.Time) error {
	return r.record(ctx, "moving a payload to the dead letters", id, true, func(ctx context.Context) error {
		return r.Store.DeadLetterPayload(ctx, id, reason, lastStatus, lastError, now)
	})
}

func (r *recordingStore) RecordRegionAnswer(ctx context.Context, id int64, mailbox string, answer []byte, lastStatus int, now time.Time) error {
	// A retried answer finds the row again: it keeps its id when it
	// moves to its callback mailbox, and recording the answer twice
	// leaves it as once.
	return r.record(ctx, "recording a region's answer", id, false, func(ctx context.Context) error {
		return r.Store.RecordRegionAnswer(ctx, id, mailbox, answer, lastStatus, now)
	})
}

// record runs write under ctx, then, while it fails with the database
// unavailable or out of time, again with a fresh timeout each try, until
// it is in or the drainer stops. On the first try ErrNotFound is returned
// as it is (another drainer or an operator took the row). On a retry of
// a write that removes the row (gone), ErrNotFound means the write had
// landed, its answer lost, and counts as done. Every other error is
// returned as it is.
func (r *recordingStore) record(ctx context.Context, what string, id int64, gone bool, write func(context.Context) error) error {
	err := write(ctx)
	if !retryable(err) {
		return err
	}
	stop := context.Background()
	if p := r.stop.Load(); p != nil {
		stop = *p
	}
	backoff := 50 * time.Millisecond
	for tries := 2; ; tries++ {
		r.warn.warn("record:"+what, what+" failed; retrying until the database takes it, the payload is not sent again meanwhile",
			zap.Int64("payload", id), zap.Error(err))
		t := time.NewTimer(backoff)
		select {
		case <-stop.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff = min(2*backoff, recordRetryCap)
		tctx, cancel := context.WithTimeout(context.WithoutCancel(stop), r.timeout)
		err = write(tctx)
		cancel()
		if gone && errors.Is(err, store.ErrNotFound) {
			err = nil
		}
		if !retryable(err) {
			if err == nil {
				r.log.Info(what+": recorded once the database answered again", zap.Int64("payload", id), zap.Int("tries", tries))
			}
			return err
		}
	}
}

// retryable reports a failed write that may succeed later: the database
// was unavailable, or the try ran out of time or was cut short (the
// statement may or may not have reached the server).
func retryable(err error) bool {
	return err != nil && (errors.Is(err, store.ErrUnavailable) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled))
}
