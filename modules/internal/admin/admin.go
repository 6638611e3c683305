// Package admin is the operator console: the admin API under /sentry_silo/
// of Caddy's admin endpoint, whose routes, parameters and shapes are the
// contract in docs/admin-api.md. It needs the store's parts, a way to wake
// the drainer and what this instance knows of itself (Instance), so it
// lives apart from the drainer; the admin.api.sentry_silo module is a thin
// adapter over it. Nothing here imports Caddy.
//
// The files: admin.go routes a request and renders errors; params.go reads
// parameters, filters and cursors; views.go and mask.go are the answers'
// shapes and what they hide; mailboxes.go, rows.go, bulk.go, pauses.go and
// status.go are the routes.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// Prefix is where the admin routes live.
const Prefix = "/sentry_silo/"

// Page sizes of the listings.
const (
	DefaultPage = 100
	MaxPage     = 1000
	// The pre-console names of the same bounds.
	DefaultDeadLetterPage = DefaultPage
	MaxDeadLetterPage     = MaxPage
)

// storeTimeout bounds one store operation of a request (a listing, one
// batch of a bulk action).
const storeTimeout = 30 * time.Second

// MailboxStore is what the mailbox and payload routes need of the storage.
type MailboxStore interface {
	MailboxHeads(ctx context.Context, after string, limit int) ([]store.MailboxHead, error)
	MailboxDepths(ctx context.Context, names []string, limit int) ([]int64, error)
	RetryMailbox(ctx context.Context, mailbox string, now time.Time) error
	ListPayloads(ctx context.Context, f store.RowFilter, after int64, limit int) ([]store.RowSummary, error)
	Payload(ctx context.Context, id int64) (store.Payload, error)
}

// DeadLetterStore is what the dead-letter routes need.
type DeadLetterStore interface {
	ListDeadLetters(ctx context.Context, f store.RowFilter, after int64, limit int) ([]store.DeadLetterSummary, error)
	DeadLetter(ctx context.Context, id int64) (store.DeadLetter, error)
	ReplayDeadLetter(ctx context.Context, id int64, now time.Time) (int64, error)
	DeleteDeadLetter(ctx context.Context, id int64) error
	MaxDeadLetterID(ctx context.Context) (int64, error)
	ReplayDeadLetters(ctx context.Context, f store.RowFilter, upto int64, batch int, now time.Time) (store.Replayed, error)
	DeleteDeadLetters(ctx context.Context, f store.RowFilter, upto int64, batch int) (int, error)
}

// DeliveredStore is what the delivered-history routes need.
type DeliveredStore interface {
	ListDelivered(ctx context.Context, f store.RowFilter, after store.DeliveredCursor, limit int) ([]store.DeliveredSummary, error)
	Delivered(ctx context.Context, id int64) (store.DeliveredPayload, error)
	ReplayDelivered(ctx context.Context, id int64, again bool, now time.Time) (int64, error)
	ReplayDeliveredRows(ctx context.Context, f store.RowFilter, before time.Time, batch int, now time.Time) (store.Replayed, error)
	DeleteDelivered(ctx context.Context, id int64) error
	DeleteDeliveredRows(ctx context.Context, f store.RowFilter, before time.Time, batch int) (int, error)
}

// PauseStore is what the pause routes need.
type PauseStore interface {
	Pause(ctx context.Context, p store.Pause) (store.Pause, bool, error)
	Resume(ctx context.Context, kind, name string) (bool, error)
	Pauses(ctx context.Context) ([]store.Pause, error)
}

// Health is what the status route asks of the storage.
type Health interface {
	Engine() string
	Where() string
	Ping(ctx context.Context) error
}

// Stores are the storage's parts, one per group of routes; both engines
// give them all. A nil part answers 503 on its routes.
type Stores struct {
	Mailboxes   MailboxStore
	DeadLetters DeadLetterStore
	Delivered   DeliveredStore
	Pauses      PauseStore
	Health      Health
}

// API serves the admin API.
type API struct {
	Stores Stores
	// Wake, when set, wakes the local drainer after a replay, a retry, a
	// pause or a resume (with no names: a full scan, which reads the
	// pauses again).
	Wake func(mailboxes ...string)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Regions lists the configured regions; nil means none.
	Regions func() []string
	// BreakerOpen reports whether this instance's drainer found a region
	// unreachable (its breaker is open). nil means no drainer runs here.
	BreakerOpen func(region string) bool
	// Instance is what this process knows of itself, for the status.
	Instance Instance
	// bulk overrides the bulk actions' bounds (tests); nil: bulk.go's.
	bulk *bulkBounds
}

// HTTPError is an admin API failure: the status to answer and a message
// for the operator; Err keeps the cause for the log.
type HTTPError struct {
	Status  int
	Message string
	Err     error
}

func (e *HTTPError) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *HTTPError) Unwrap() error { return e.Err }

func httpError(status int, format string, args ...any) *HTTPError {
	return &HTTPError{Status: status, Message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *HTTPError {
	return httpError(http.StatusBadRequest, format, args...)
}

func (a API) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

func (a API) wake(mailboxes ...string) {
	if a.Wake != nil {
		a.Wake(mailboxes...)
	}
}

func (a API) regions() []string {
	if a.Regions == nil {
		return nil
	}
	return a.Regions()
}

// handler serves one route. segs are the path's unescaped segments after
// the prefix.
type handler func(a API, w http.ResponseWriter, r *http.Request, segs []string) error

// route is one method of one path shape.
type route struct {
	method string
	fn     handler
}

// ServeHTTP answers one admin request. Errors are *HTTPError, for the
// caller to render as JSON (Caddy's APIError does).
func (a API) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), Prefix)
	if !ok {
		return httpError(http.StatusNotFound, "not found")
	}
	var segs []string
	if rest = strings.Trim(rest, "/"); rest != "" {
		for _, s := range strings.Split(rest, "/") {
			u, err := url.PathUnescape(s)
			if err != nil || u == "" {
				return badRequest("invalid path segment %q", s)
			}
			segs = append(segs, u)
		}
	}
	routes := match(segs)
	if len(routes) == 0 {
		return httpError(http.StatusNotFound, "no admin route %s (see docs/admin-api.md)", r.URL.Path)
	}
	allow := allowed(routes)
	if r.Method == http.MethodOptions {
		w.Header().Set("Allow", allow)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	for _, rt := range routes {
		if rt.method == method {
			return rt.fn(a, w, r, segs)
		}
	}
	w.Header().Set("Allow", allow)
	return httpError(http.StatusMethodNotAllowed, "method %s not allowed on %s; use %s", r.Method, r.URL.Path, allow)
}

// match returns the routes of a path.
func match(segs []string) []route {
	get := func(fn handler) route { return route{http.MethodGet, fn} }
	post := func(fn handler) route { return route{http.MethodPost, fn} }
	del := func(fn handler) route { return route{http.MethodDelete, fn} }
	n := len(segs)
	if n == 0 {
		return nil
	}
	switch head := segs[0]; {
	case n == 1 && head == "status":
		return []route{get(status)}
	case n == 1 && head == "regions":
		return []route{get(regionList)}
	case n == 3 && head == "regions" && segs[2] == "pause":
		return []route{post(pauseRegion)}
	case n == 3 && head == "regions" && segs[2] == "resume":
		return []route{post(resumeRegion)}
	case n == 1 && head == "pauses":
		return []route{get(pauseList)}
	case n == 1 && head == "mailboxes":
		return []route{get(mailboxList)}
	case n == 2 && head == "mailboxes":
		return []route{get(mailboxOne)}
	case n == 3 && head == "mailboxes" && segs[2] == "retry":
		return []route{post(retry)}
	case n == 3 && head == "mailboxes" && segs[2] == "pause":
		return []route{post(pauseMailbox)}
	case n == 3 && head == "mailboxes" && segs[2] == "resume":
		return []route{post(resumeMailbox)}
	case n == 1 && head == "payloads":
		return []route{get(payloadList)}
	case n == 2 && head == "payloads":
		return []route{get(payloadOne)}
	case n == 1 && head == "dead_letters":
		return []route{get(deadLetterList), del(deadLetterBulkDelete)}
	case n == 2 && head == "dead_letters" && segs[1] == "replay":
		return []route{post(deadLetterBulkReplay)}
	case n == 2 && head == "dead_letters":
		return []route{get(deadLetterOne), del(deadLetterDelete)}
	case n == 3 && head == "dead_letters" && segs[2] == "replay":
		return []route{post(deadLetterReplay)}
	case n == 1 && head == "delivered":
		return []route{get(deliveredList), del(deliveredBulkDelete)}
	case n == 2 && head == "delivered" && segs[1] == "replay":
		return []route{post(deliveredBulkReplay)}
	case n == 2 && head == "delivered":
		return []route{get(deliveredOne), del(deliveredDelete)}
	case n == 3 && head == "delivered" && segs[2] == "replay":
		return []route{post(deliveredReplay)}
	}
	return nil
}

// allowed is the Allow header of a path's routes.
func allowed(routes []route) string {
	var ms []string
	for _, rt := range routes {
		ms = append(ms, rt.method)
		if rt.method == http.MethodGet {
			ms = append(ms, http.MethodHead)
		}
	}
	return strings.Join(append(ms, http.MethodOptions), ", ")
}

// storeError maps a store failure to its answer: 404 for a missing row,
// 409 for a replayed one, 503 when the database cannot be reached, 500
// otherwise, keeping the cause for the log.
func storeError(what string, err error) *HTTPError {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &HTTPError{Status: http.StatusNotFound, Message: what + ": not found", Err: err}
	case errors.Is(err, store.ErrAlreadyReplayed):
		return &HTTPError{Status: http.StatusConflict, Message: what + ": replayed already; add again=true to replay it once more", Err: err}
	case errors.Is(err, store.ErrUnavailable):
		return &HTTPError{Status: http.StatusServiceUnavailable, Message: what + " failed: the storage database cannot be reached", Err: err}
	}
	return &HTTPError{Status: http.StatusInternalServerError, Message: what + " failed", Err: err}
}

// unavailable is the answer of a route whose store part is missing.
func unavailable(what string) *HTTPError {
	return httpError(http.StatusServiceUnavailable, "no store for %s is configured", what)
}

// opContext bounds one store operation of a request.
func opContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), storeTimeout)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}
