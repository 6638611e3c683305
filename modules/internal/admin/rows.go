package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// Cursor kinds of the row listings (params.go); the dead letters' cursor
// is a bare id, as it was before the console.
const (
	payloadCursor   = "p"
	deliveredCursor = "d"
)

// GET /sentry_silo/payloads
func payloadList(a API, w http.ResponseWriter, r *http.Request, _ []string) error {
	st := a.Stores.Mailboxes
	if st == nil {
		return unavailable("payloads")
	}
	q, err := params(r, with(rowFilters, pageParams...)...)
	if err != nil {
		return err
	}
	f, err := filter(q)
	if err != nil {
		return err
	}
	n, err := limit(q)
	if err != nil {
		return err
	}
	after, err := idCursor(q, payloadCursor)
	if err != nil {
		return err
	}
	ctx, cancel := opContext(r)
	defer cancel()
	rows, err := st.ListPayloads(ctx, f, after, n)
	if err != nil {
		return storeError("listing payloads", err)
	}
	out := make([]PayloadView, 0, len(rows))
	for _, s := range rows {
		out = append(out, PayloadView{RowView: rowView(s), NextAttemptAt: nextAttempt(s.ScheduleFor, a.now())})
	}
	var next *string
	if len(rows) == n {
		c := encodeCursor(payloadCursor, strconv.FormatInt(rows[len(rows)-1].ID, 10))
		next = &c
	}
	return writeJSON(w, http.StatusOK, map[string]any{"payloads": out, "next": next})
}

// nextAttempt is when a row is next tried: its schedule, or now when due.
func nextAttempt(schedule, now time.Time) time.Time {
	if schedule.Before(now) {
		return now
	}
	return schedule.UTC()
}

// GET /sentry_silo/payloads/<id>
func payloadOne(a API, w http.ResponseWriter, r *http.Request, segs []string) error {
	st := a.Stores.Mailboxes
	if st == nil {
		return unavailable("payloads")
	}
	return openOne(w, r, segs, "payload %s (pending payloads only)", st.Payload, func(p store.Payload) any {
		return struct {
			PayloadView
			DetailView
		}{PayloadView{payloadRowView(p), nextAttempt(p.ScheduleFor, a.now())}, detailView(p)}
	})
}

// openOne answers GET <rows>/<id>: the row of segs[1] read with get, shown
// as view makes it; describe (with the id for %s) names the row in a
// store error.
func openOne[R any](w http.ResponseWriter, r *http.Request, segs []string, describe string, get func(context.Context, int64) (R, error), view func(R) any) error {
	rid, err := id(segs[1])
	if err != nil {
		return err
	}
	if _, err := params(r); err != nil {
		return err
	}
	ctx, cancel := opContext(r)
	defer cancel()
	row, err := get(ctx, rid)
	if err != nil {
		return storeError(fmt.Sprintf(describe, segs[1]), err)
	}
	return writeJSON(w, http.StatusOK, view(row))
}

// GET /sentry_silo/dead_letters
func deadLetterList(a API, w http.ResponseWriter, r *http.Request, _ []string) error {
	st := a.Stores.DeadLetters
	if st == nil {
		return unavailable("dead letters")
	}
	q, err := params(r, with(deadLetterFilters, pageParams...)...)
	if err != nil {
		return err
	}
	f, err := filter(q)
	if err != nil {
		return err
	}
	n, err := limit(q)
	if err != nil {
		return err
	}
	var after int64
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			return badRequest("after must be a dead letter id (a non-negative integer: the previous page's next), got %q", v)
		}
	}
	ctx, cancel := opContext(r)
	defer cancel()
	rows, err := st.ListDeadLetters(ctx, f, after, n)
	if err != nil {
		return storeError("listing dead letters", err)
	}
	out := make([]DeadLetterView, 0, len(rows))
	for _, d := range rows {
		out = append(out, DeadLetterView{RowView: rowView(d.RowSummary), Reason: d.Reason, DeadAt: d.DeadAt.UTC()})
	}
	var next *int64
	if len(out) == n {
		last := out[len(out)-1].ID
		next = &last
	}
	return writeJSON(w, http.StatusOK, map[string]any{"dead_letters": out, "next": next})
}

// GET /sentry_silo/dead_letters/<id>
func deadLetterOne(a API, w http.ResponseWriter, r *http.Request, segs []string) error {
	st := a.Stores.DeadLetters
	if st == nil {
		return unavailable("dead letters")
	}
	return openOne(w, r, segs, "dead letter %s", st.DeadLetter, func(d store.DeadLetter) any {
		return struct {
			DeadLetterView
			DetailView
		}{DeadLetterView{payloadRowView(d.Payload), d.Reason, d.DeadAt.UTC()}, detailView(d.Payload)}
	})
}

// POST /sentry_silo/dead_letters/<id>/replay
func deadLetterReplay(a API, w http.ResponseWriter, r *http.Request, segs []string) error {
	st := a.Stores.DeadLetters
	if st == nil {
		return unavailable("dead letters")
	}
	did, err := id(segs[1])
	if err != nil {
		return err
	}
	if _, err := params(r); err != nil {
		return err
	}
	ctx, cancel := opContext(r)
	defer cancel()
	newID, err := st.ReplayDeadLetter(ctx, did, a.now())
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return httpError(http.StatusNotFound, "no dead letter %d (replayed, deleted or purged already?)", did)
		}
		return storeError("replaying dead letter "+segs[1], err)
	}
	a.wake()
	return writeJSON(w, http.StatusOK, map[string]any{"replayed": did, "payload_id": newID})
}

// DELETE /sentry_silo/dead_letters/<id>
func deadLetterDelete(a API, w http.ResponseWriter, r *http.Request, segs []string) error {
	st := a.Stores.DeadLetters
	if st == nil {
		return unavailable("dead letters")
	}
	return deleteOne(w, r, segs, "dead letter", st.DeleteDeadLetter)
}

// deleteOne deletes the row of segs[1] with del.
func deleteOne(w http.ResponseWriter, r *http.Request, segs []string, what string, del func(context.Context, int64) error) error {
	rid, err := id(segs[1])
	if err != nil {
		return err
	}
	if _, err := params(r); err != nil {
		return err
	}
	ctx, cancel := opContext(r)
	defer cancel()
	if err := del(ctx, rid); err != nil {
		return storeError("deleting "+what+" "+segs[1], err)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"deleted": 1})
}

// GET /sentry_silo/delivered
func deliveredList(a API, w http.ResponseWriter, r *http.Request, _ []string) error {
	st := a.Stores.Delivered
	if st == nil {
		return unavailable("the delivered history")
	}
	q, err := params(r, with(deliveredFilters, pageParams...)...)
	if err != nil {
		return err
	}
	f, err := filter(q)
	if err != nil {
		return err
	}
	n, err := limit(q)
	if err != nil {
		return err
	}
	after, err := deliveredAfter(q)
	if err != nil {
		return err
	}
	ctx, cancel := opContext(r)
	defer cancel()
	rows, err := st.ListDelivered(ctx, f, after, n)
	if err != nil {
		return storeError("listing the delivered history", err)
	}
	out := make([]DeliveredView, 0, len(rows))
	for _, d := range rows {
		out = append(out, deliveredView(rowView(d.RowSummary), d.DeliveredInfo))
	}
	var next *string
	if len(rows) == n {
		last := rows[len(rows)-1]
		c := encodeCursor(deliveredCursor, strconv.FormatInt(last.At.UnixMicro(), 10)+"."+strconv.FormatInt(last.ID, 10))
		next = &c
	}
	return writeJSON(w, http.StatusOK, map[string]any{"delivered": out, "next": next,
		"retention_seconds": a.Instance.deliveredRetention().Seconds()})
}

// deliveredAfter reads the history's cursor: "<unix µs>.<id>".
func deliveredAfter(q url.Values) (store.DeliveredCursor, error) {
	pos, err := decodeCursor(q, deliveredCursor)
	if err != nil || pos == "" {
		return store.DeliveredCursor{}, err
	}
	at, rid, ok := strings.Cut(pos, ".")
	us, err1 := strconv.ParseInt(at, 10, 64)
	n, err2 := strconv.ParseInt(rid, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return store.DeliveredCursor{}, badRequest("after: not a cursor of this listing")
	}
	return store.DeliveredCursor{At: time.UnixMicro(us).UTC(), ID: n}, nil
}

// GET /sentry_silo/delivered/<id>
func deliveredOne(a API, w http.ResponseWriter, r *http.Request, segs []string) error {
	st := a.Stores.Delivered
	if st == nil {
		return unavailable("the delivered history")
	}
	return openOne(w, r, segs, "delivered payload %s", st.Delivered, func(d store.DeliveredPayload) any {
		return struct {
			DeliveredView
			DetailView
		}{deliveredView(payloadRowView(d.Payload), d.DeliveredInfo), detailView(d.Payload)}
	})
}

// POST /sentry_silo/delivered/<id>/replay[?again=true]
func deliveredReplay(a API, w http.ResponseWriter, r *http.Request, segs []string) error {
	st := a.Stores.Delivered
	if st == nil {
		return unavailable("the delivered history")
	}
	did, err := id(segs[1])
	if err != nil {
		return err
	}
	q, err := params(r, "again")
	if err != nil {
		return err
	}
	again, err := boolParam(q, "again")
	if err != nil {
		return err
	}
	ctx, cancel := opContext(r)
	defer cancel()
	newID, err := st.ReplayDelivered(ctx, did, again, a.now())
	if err != nil {
		return storeError("replaying delivered payload "+segs[1], err)
	}
	a.wake()
	return writeJSON(w, http.StatusOK, map[string]any{"replayed": did, "payload_id": newID})
}

// DELETE /sentry_silo/delivered/<id>
func deliveredDelete(a API, w http.ResponseWriter, r *http.Request, segs []string) error {
	st := a.Stores.Delivered
	if st == nil {
		return unavailable("the delivered history")
	}
	return deleteOne(w, r, segs, "delivered payload", st.DeleteDelivered)
}
