// Package admin is the admin API of the mailboxes and dead letters
// (DESIGN.md): the routes under /sentry_silo/ of Caddy's admin endpoint.
// It needs only the store and a way to wake the drainer, so it lives
// apart from the drainer; the admin.api.sentry_silo module is a thin
// adapter over it. Nothing here imports Caddy.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// Prefix is where the admin routes live.
const Prefix = "/sentry_silo/"

// Page sizes of GET dead_letters.
const (
	DefaultDeadLetterPage = 100
	MaxDeadLetterPage     = 1000
)

// storeTimeout bounds the store work of one admin request.
const storeTimeout = 30 * time.Second

// Store is what the admin API needs of the storage: the listings and the
// two operator actions.
type Store interface {
	Mailboxes(ctx context.Context, now time.Time) ([]store.MailboxStats, error)
	DeadLetters(ctx context.Context, limit int, after int64) ([]store.DeadLetter, error)
	ReplayDeadLetter(ctx context.Context, id int64, now time.Time) (int64, error)
	RetryMailbox(ctx context.Context, mailbox string, now time.Time) error
}

// API serves the admin API against a store.
type API struct {
	Store Store
	// Wake, when set, wakes the local drainer after a replay or retry.
	Wake func(mailboxes ...string)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Regions, when set, serves GET /sentry_silo/regions: it lists the
	// configured regions.
	Regions func() []string
	// Paused reports whether this instance's drainer has paused
	// deliveries to a region (its breaker is open). nil means no drainer
	// runs here, so none is paused.
	Paused func(region string) bool
}

// RegionView is one line of GET /sentry_silo/regions.
type RegionView struct {
	Name string `json:"name"`
	// BreakerOpen is true while this instance's drainer pauses deliveries
	// to the region (it looked unreachable; probes run).
	BreakerOpen bool `json:"breaker_open"`
}

// DeadLetterView is one line of GET /sentry_silo/dead_letters.
type DeadLetterView struct {
	ID         int64     `json:"id"`
	Mailbox    string    `json:"mailbox"`
	Region     string    `json:"region"`
	Provider   string    `json:"provider"`
	Reason     string    `json:"reason"`
	LastStatus int       `json:"last_status"`
	LastError  string    `json:"last_error"`
	Attempts   int       `json:"attempts"`
	DateAdded  time.Time `json:"date_added"`
	DeadAt     time.Time `json:"dead_at"`
	// RegionAnswered is set on a callback the region answered: the dead
	// letter keeps the answer, and a replay only POSTs it again.
	RegionAnswered bool `json:"region_answered"`
}

// HTTPError is an admin API failure: the status to answer and a message
// for the operator.
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

func (a API) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// ServeHTTP answers one admin request. Errors are *HTTPError, for the
// caller to render.
func (a API) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	if a.Store == nil {
		return httpError(http.StatusServiceUnavailable, "no store is configured")
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), Prefix)
	if !ok {
		return httpError(http.StatusNotFound, "not found")
	}
	rest = strings.TrimSuffix(rest, "/")
	switch {
	case rest == "mailboxes":
		if err := allow(r, http.MethodGet); err != nil {
			return err
		}
		return a.mailboxes(w, r)
	case rest == "regions" && a.Regions != nil:
		if err := allow(r, http.MethodGet); err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, map[string]any{"regions": a.regionViews()})
	case rest == "dead_letters":
		if err := allow(r, http.MethodGet); err != nil {
			return err
		}
		return a.deadLetters(w, r)
	case strings.HasPrefix(rest, "dead_letters/") && strings.HasSuffix(rest, "/replay"):
		if err := allow(r, http.MethodPost); err != nil {
			return err
		}
		raw := strings.TrimSuffix(strings.TrimPrefix(rest, "dead_letters/"), "/replay")
		id, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || id <= 0 {
			return httpError(http.StatusBadRequest, "dead letter id must be a positive integer, got %q", raw)
		}
		return a.replay(w, r, id)
	case strings.HasPrefix(rest, "mailboxes/") && strings.HasSuffix(rest, "/retry"):
		if err := allow(r, http.MethodPost); err != nil {
			return err
		}
		raw := strings.TrimSuffix(strings.TrimPrefix(rest, "mailboxes/"), "/retry")
		name, err := url.PathUnescape(raw)
		if err != nil || name == "" {
			return httpError(http.StatusBadRequest, "invalid mailbox name %q", raw)
		}
		return a.retry(w, r, name)
	}
	return httpError(http.StatusNotFound, "no admin route %s", r.URL.Path)
}

func allow(r *http.Request, method string) error {
	if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
		return nil
	}
	return httpError(http.StatusMethodNotAllowed, "method %s not allowed; use %s", r.Method, method)
}

// regionViews is each configured region and whether it is paused here.
func (a API) regionViews() []RegionView {
	names := a.Regions()
	out := make([]RegionView, 0, len(names))
	for _, n := range names {
		out = append(out, RegionView{Name: n, BreakerOpen: a.Paused != nil && a.Paused(n)})
	}
	return out
}

// mailboxes lists the mailboxes: each line is a store.MailboxStats, whose
// JSON names are the API's.
func (a API) mailboxes(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	boxes, err := a.Store.Mailboxes(ctx, a.now())
	if err != nil {
		return storeError("listing mailboxes", err)
	}
	if boxes == nil {
		boxes = []store.MailboxStats{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"mailboxes": boxes})
}

func (a API) deadLetters(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit := DefaultDeadLetterPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxDeadLetterPage {
			return httpError(http.StatusBadRequest, "limit must be an integer from 1 to %d, got %q", MaxDeadLetterPage, v)
		}
		limit = n
	}
	var after int64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return httpError(http.StatusBadRequest, "after must be a dead letter id (a non-negative integer), got %q", v)
		}
		after = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	rows, err := a.Store.DeadLetters(ctx, limit, after)
	if err != nil {
		return storeError("listing dead letters", err)
	}
	out := make([]DeadLetterView, 0, len(rows))
	for _, dl := range rows {
		out = append(out, deadLetterView(dl))
	}
	var next *int64
	if len(out) == limit {
		last := out[len(out)-1].ID
		next = &last
	}
	return writeJSON(w, http.StatusOK, map[string]any{"dead_letters": out, "next": next})
}

func deadLetterView(dl store.DeadLetter) DeadLetterView {
	return DeadLetterView{
		ID:         dl.ID,
		Mailbox:    dl.MailboxName,
		Region:     dl.Region,
		Provider:   dl.Provider,
		Reason:     dl.Reason,
		LastStatus: dl.LastStatus,
		LastError:  dl.LastError,
		Attempts:   dl.Attempts,
		DateAdded:  dl.DateAdded,
		DeadAt:     dl.DeadAt,

		RegionAnswered: dl.Answered,
	}
}

func (a API) replay(w http.ResponseWriter, r *http.Request, id int64) error {
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	newID, err := a.Store.ReplayDeadLetter(ctx, id, a.now())
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return httpError(http.StatusNotFound, "no dead letter %d", id)
		}
		return storeError("replaying a dead letter", err)
	}
	if a.Wake != nil {
		a.Wake()
	}
	return writeJSON(w, http.StatusOK, map[string]any{"replayed": id, "payload_id": newID})
}

func (a API) retry(w http.ResponseWriter, r *http.Request, name string) error {
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	if err := a.Store.RetryMailbox(ctx, name, a.now()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return httpError(http.StatusNotFound, "no mailbox %q (or it is empty)", name)
		}
		return storeError("retrying a mailbox", err)
	}
	if a.Wake != nil {
		a.Wake(name)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"mailbox": name, "retried": true})
}

func storeError(what string, err error) *HTTPError {
	status := http.StatusInternalServerError
	if errors.Is(err, store.ErrUnavailable) {
		status = http.StatusServiceUnavailable
	}
	return &HTTPError{Status: status, Message: what + " failed", Err: err}
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}
