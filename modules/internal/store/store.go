// Package store keeps captured webhooks durable: the silo_webhook_payload
// mailboxes, the silo_dead_letter table and the mailbox leases, on
// PostgreSQL (pgx/v5, production, many instances) or embedded SQLite
// (modernc.org/sqlite, the default, one instance). It also implements the
// SQL side of the directory (directory.Source and directory.Writer) on the
// same engines. Nothing here imports Caddy.
package store

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Destination types of a payload. A region payload is replayed to its
// region. A callback payload (the Slack/Discord response_url jobs of
// §3.6) is replayed to its region and the region's answer is then POSTed to
// CallbackURL. Once the region has answered, the answer is recorded with
// RecordRegionAnswer and the region is never called again for that row.
const (
	DestinationRegion   = "sentry_region"
	DestinationCallback = "response_url"
)

// Dead-letter reasons.
const (
	ReasonAttemptsExceeded = "attempts_exceeded"
	ReasonMaxAge           = "max_age"
	// ReasonDropped is a prefix: "dropped_404".
	ReasonDropped = "dropped_"
	// ReasonCallbackRefused: the response_url is not one the drainer may
	// POST to (scheme, host or address). When the region had not been
	// called yet it never is.
	ReasonCallbackRefused = "callback_refused"
	// ReasonCallbackFailed: the region answered (the dead letter keeps
	// the answer) but the POST to the response_url failed for good.
	ReasonCallbackFailed = "callback_failed"
)

// ErrUnavailable wraps every error that means "the database cannot be
// reached or refused the work", as opposed to a bad argument. Capture maps
// it to 503.
var ErrUnavailable = errors.New("store unavailable")

// ErrNotFound is returned by admin operations on a missing row or mailbox,
// and by the drain operations (DeletePayload, ReschedulePayload,
// DeadLetterPayload) when the row is gone: another drainer took the
// mailbox over after this one's lease lapsed, or an operator acted on it.
var ErrNotFound = errors.New("store: not found")

// ErrInvalidPayload is returned by InsertPayloads, before any database
// work, when a payload fails NewPayload.Validate. Capture validates each
// payload before queueing it for a group commit, so one bad payload can
// never fail a whole batch.
var ErrInvalidPayload = errors.New("store: invalid payload")

// NewPayload is one captured request bound for one region.
type NewPayload struct {
	MailboxName     string
	Provider        string
	Region          string
	IntegrationID   int64  // 0 stores NULL
	DestinationType string // "" means DestinationRegion
	CallbackURL     string // DestinationCallback only
	Method          string
	Path            string // path plus "?query", verbatim
	Headers         http.Header
	Body            []byte // raw bytes, never re-encoded
	// DeliveryKey is the provider's delivery id (X-GitHub-Delivery, ...).
	// A payload whose key matches a row still pending in the same mailbox
	// is not stored again. "" disables de-duplication.
	DeliveryKey string
}

// Validate checks what the table requires of a payload. The error wraps
// ErrInvalidPayload.
func (p *NewPayload) Validate() error {
	var problem string
	switch {
	case p.MailboxName == "":
		problem = "empty mailbox name"
	case p.Method == "":
		problem = "empty request method"
	case p.Path == "":
		problem = "empty request path"
	case p.DestinationType != "" && p.DestinationType != DestinationRegion && p.DestinationType != DestinationCallback:
		problem = "unknown destination type " + strconv.Quote(p.DestinationType)
	case p.Region == "":
		problem = "empty region"
	case p.DestinationType == DestinationCallback && p.CallbackURL == "":
		problem = "callback payload without callback URL"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s (mailbox %q)", ErrInvalidPayload, problem, p.MailboxName)
}

// Payload is a stored row of silo_webhook_payload.
type Payload struct {
	ID int64
	NewPayload
	DateAdded   time.Time
	ScheduleFor time.Time
	Attempts    int
	LastStatus  int    // last delivery HTTP status, 0 if none
	LastError   string // last delivery error, "" if none
	// Answered is set once the region answered a callback payload;
	// RegionAnswer is that answer (possibly empty). The row then only
	// waits for its POST to CallbackURL: the region is never called
	// again for it, and Attempts counts those POSTs.
	Answered     bool
	RegionAnswer []byte
}

// InsertResult tells, for each NewPayload in order, the id of its row and
// whether it was a duplicate of a pending row (then ID is that row's id).
type InsertResult struct {
	ID        int64
	Duplicate bool
}

// MailboxStats is one line of the admin mailbox listing.
type MailboxStats struct {
	Name          string    `json:"name"`
	Region        string    `json:"region"`
	Provider      string    `json:"provider"`
	Depth         int64     `json:"depth"`
	OldestAge     float64   `json:"oldest_age_seconds"`
	HeadAttempts  int       `json:"head_attempts"`
	NextAttemptAt time.Time `json:"next_attempt_at"`
}

// DeadLetter is a row of silo_dead_letter: the whole payload plus why it
// was given up.
type DeadLetter struct {
	Payload
	Reason string
	DeadAt time.Time
}

// Both engines (Postgres and SQLite) give the same methods, documented on
// the Postgres ones. Each consumer names the methods it uses in an
// interface of its own (drain.Store, admin.Store, credentials.Store,
// directory.Source, the capture's mailbox.InsertFunc). Every method is safe
// for concurrent use and honours ctx deadlines; errors that mean the
// database is unreachable wrap ErrUnavailable.
