package drain

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

// AdminPrefix is where the admin routes live.
const AdminPrefix = "/sentry_silo/"

// Admin page sizes of GET dead_letters.
const (
	DefaultDeadLetterPage = 100
	MaxDeadLetterPage     = 1000
)

// Admin serves the admin API (DESIGN.md) against a store. The Caddy admin
// module is a thin adapter over it.
type Admin struct {
	Store store.Store
	// Wake, when set, wakes the local drainer after a replay or retry.
	Wake func(mailboxes ...string)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Regions, when set, serves GET /sentry_silo/regions: each region
	// and whether this instance's drainer has paused it.
	Regions func() []RegionView
}

// RegionView is one line of GET /sentry_silo/regions.
type RegionView struct {
	Name string `json:"name"`
	// BreakerOpen is true while this instance's drainer pauses deliveries
	// to the region (it looked unreachable; probes run).
	BreakerOpen bool `json:"breaker_open"`
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

// MailboxView is one line of GET /sentry_silo/mailboxes.
type MailboxView = store.MailboxStats

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

func (a Admin) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// ServeHTTP answers one admin request. Errors are *HTTPError, for the
// caller to render.
func (a Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	if a.Store == nil {
		return httpError(http.StatusServiceUnavailable, "no store is configured")
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), AdminPrefix)
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
		regions := a.Regions()
		if regions == nil {
			regions = []RegionView{}
		}
		return writeJSON(w, http.StatusOK, map[string]any{"regions": regions})
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

func (a Admin) mailboxes(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
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

func (a Admin) deadLetters(w http.ResponseWriter, r *http.Request) error {
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
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	rows, err := a.Store.DeadLetters(ctx, limit, after)
	if err != nil {
		return storeError("listing dead letters", err)
	}
	out := make([]DeadLetterView, 0, len(rows))
	for _, dl := range rows {
		out = append(out, DeadLetterView{
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
		})
	}
	var next *int64
	if len(out) == limit {
		last := out[len(out)-1].ID
		next = &last
	}
	return writeJSON(w, http.StatusOK, map[string]any{"dead_letters": out, "next": next})
}

func (a Admin) replay(w http.ResponseWriter, r *http.Request, id int64) error {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
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

func (a Admin) retry(w http.ResponseWriter, r *http.Request, name string) error {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
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

// Admin returns the admin operations over this drainer's store, waking it
// after a replay or a retry.
func (d *Drainer) Admin() Admin {
	return Admin{Store: d.st, Wake: d.Wake, Now: d.cfg.Now}
}

// RegionViews reports the breaker state of each named region.
func (d *Drainer) RegionViews(names []string) []RegionView {
	out := make([]RegionView, 0, len(names))
	for _, n := range names {
		out = append(out, RegionView{Name: n, BreakerOpen: d.BreakerOpen(n)})
	}
	return out
}
