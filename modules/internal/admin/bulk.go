package admin

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// Bounds of a bulk action (docs/admin-api.md, "Bulk actions"): batches of
// bulkBatch rows, one statement each (PurgeDeadLetters' size), at most
// bulkBatches of them and none started after bulkTime, so that one request
// stays well inside any client's timeout; the answer then says more, and
// the same request goes on.
const (
	bulkBatch   = 500
	bulkBatches = 100
	bulkTime    = 20 * time.Second
)

// bulkBounds are a bulk action's bounds: the defaults above, smaller in
// tests (API.bulk) to reach "more" without 50,000 rows.
type bulkBounds struct {
	rows, batches int
	time          time.Duration
}

func (a API) bounds() bulkBounds {
	if a.bulk != nil {
		return *a.bulk
	}
	return bulkBounds{rows: bulkBatch, batches: bulkBatches, time: bulkTime}
}

// bulkResult is a bulk action's answer, under the verb ("replayed" or
// "deleted").
func bulkResult(verb string, n, batches int, more bool) map[string]any {
	return map[string]any{verb: n, "batches": batches, "more": more}
}

// bulkFilter reads a bulk action's filters, refusing none at all unless
// all=true: a lost parameter must not replay or delete everything.
func bulkFilter(r *http.Request, names []string) (store.RowFilter, error) {
	q, err := params(r, with(names, "all")...)
	if err != nil {
		return store.RowFilter{}, err
	}
	all, err := boolParam(q, "all")
	if err != nil {
		return store.RowFilter{}, err
	}
	f, err := filter(q)
	if err != nil {
		return f, err
	}
	if f.Empty() && !all {
		return f, badRequest("a bulk action needs a filter (%s), or all=true to act on every row", joinNames(names))
	}
	return f, nil
}

func joinNames(names []string) string { return strings.Join(names, ", ") }

// batches runs step (one batch of at most b.rows) until it touches fewer
// than b.rows rows, or the request's bounds are reached (more).
func batches(r *http.Request, b bulkBounds, step func(ctx context.Context, rows int) (int, error)) (total, n int, more bool, err error) {
	start := time.Now()
	for n < b.batches {
		if n > 0 && time.Since(start) >= b.time {
			return total, n, true, nil
		}
		ctx, cancel := opContext(r)
		touched, err := step(ctx, b.rows)
		cancel()
		if err != nil {
			return total, n, false, err
		}
		n++
		total += touched
		if touched < b.rows {
			return total, n, false, nil
		}
	}
	return total, n, true, nil
}

// bulkError is a failed bulk action's answer: what was done before the
// failure stays done, and the message says how much.
func bulkError(what string, total int, err error) *HTTPError {
	he := storeError(what, err)
	if total > 0 {
		he.Message += " after " + strconv.Itoa(total) + " rows (repeat the request to go on)"
	}
	return he
}

// inBatches runs step in batches and answers with how many rows it did (verb),
// or with the error of doing them and the count done before it.
func (a API) inBatches(w http.ResponseWriter, r *http.Request, verb, doing string, step func(ctx context.Context, rows int) (int, error)) error {
	total, n, more, err := batches(r, a.bounds(), step)
	if err != nil {
		return bulkError(doing, total, err)
	}
	return writeJSON(w, http.StatusOK, bulkResult(verb, total, n, more))
}

// woken is a replay batch's count, once the drainer was woken for the
// mailboxes it refilled.
func (a API) woken(res store.Replayed, err error) (int, error) {
	if res.Count > 0 {
		a.wake(res.Mailboxes...)
	}
	return res.Count, err
}

// POST /sentry_silo/dead_letters/replay
func deadLetterBulkReplay(a API, w http.ResponseWriter, r *http.Request, _ []string) error {
	st := a.Stores.DeadLetters
	if st == nil {
		return unavailable("dead letters")
	}
	f, err := bulkFilter(r, deadLetterFilters)
	if err != nil {
		return err
	}
	upto, err := a.deadLetterBound(r, st)
	if err != nil {
		return err
	}
	return a.inBatches(w, r, "replayed", "replaying dead letters", func(ctx context.Context, rows int) (int, error) {
		return a.woken(st.ReplayDeadLetters(ctx, f, upto, rows, a.now()))
	})
}

// DELETE /sentry_silo/dead_letters
func deadLetterBulkDelete(a API, w http.ResponseWriter, r *http.Request, _ []string) error {
	st := a.Stores.DeadLetters
	if st == nil {
		return unavailable("dead letters")
	}
	f, err := bulkFilter(r, deadLetterFilters)
	if err != nil {
		return err
	}
	upto, err := a.deadLetterBound(r, st)
	if err != nil {
		return err
	}
	return a.inBatches(w, r, "deleted", "deleting dead letters", func(ctx context.Context, rows int) (int, error) {
		return st.DeleteDeadLetters(ctx, f, upto, rows)
	})
}

// deadLetterBound is the highest dead letter id when a bulk action
// starts: replays that fail again meanwhile come back with higher ids, and
// this request leaves them alone.
func (a API) deadLetterBound(r *http.Request, st DeadLetterStore) (int64, error) {
	ctx, cancel := opContext(r)
	defer cancel()
	upto, err := st.MaxDeadLetterID(ctx)
	if err != nil {
		return 0, storeError("reading the dead letters", err)
	}
	return upto, nil
}

// POST /sentry_silo/delivered/replay
func deliveredBulkReplay(a API, w http.ResponseWriter, r *http.Request, _ []string) error {
	st := a.Stores.Delivered
	if st == nil {
		return unavailable("the delivered history")
	}
	f, err := bulkFilter(r, deliveredFilters)
	if err != nil {
		return err
	}
	before := a.now()
	return a.inBatches(w, r, "replayed", "replaying the delivered history", func(ctx context.Context, rows int) (int, error) {
		return a.woken(st.ReplayDeliveredRows(ctx, f, before, rows, a.now()))
	})
}

// DELETE /sentry_silo/delivered
func deliveredBulkDelete(a API, w http.ResponseWriter, r *http.Request, _ []string) error {
	st := a.Stores.Delivered
	if st == nil {
		return unavailable("the delivered history")
	}
	f, err := bulkFilter(r, deliveredFilters)
	if err != nil {
		return err
	}
	before := a.now()
	return a.inBatches(w, r, "deleted", "deleting the delivered history", func(ctx context.Context, rows int) (int, error) {
		return st.DeleteDeliveredRows(ctx, f, before, rows)
	})
}
