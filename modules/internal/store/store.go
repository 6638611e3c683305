// Package store keeps captured webhooks durable: the silo_webhook_payload
// mailboxes, the silo_dead_letter table and the mailbox leases, on
// PostgreSQL (pgx/v5, production, many instances) or embedded SQLite
// (modernc.org/sqlite, the default, one instance). It also implements the
// SQL side of the directory (directory.Source and directory.Writer) on the
// same engines. Nothing here imports Caddy.
package store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
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

// Store is the durable side of caddy-silo. Every method is safe for
// concurrent use and honours ctx deadlines; errors that mean the database
// is unreachable wrap ErrUnavailable.
type Store interface {
	// Engine is "postgres" or "sqlite".
	Engine() string
	// Migrate applies the embedded migrations that are not applied yet,
	// and creates the Sentry directory tables that are missing. Safe to
	// run from several instances at once.
	Migrate(ctx context.Context) error
	Ping(ctx context.Context) error
	Close()

	// InsertPayloads stores all payloads in one transaction (group
	// commit): when it returns nil, every row is durable. Rows get
	// increasing ids in slice order, so FIFO follows the batch. A
	// duplicate whose pending row was delivered (deleted) while the
	// batch committed reports Duplicate with ID 0.
	InsertPayloads(ctx context.Context, payloads []NewPayload) ([]InsertResult, error)

	// DueMailboxes lists up to limit mailboxes that have work now: for
	// strict mailboxes a head (lowest id) with schedule_for <= now, for
	// mailboxes of skipOnFailure providers any row due now; and no live
	// lease. Ordered by the id of that row, oldest first.
	DueMailboxes(ctx context.Context, now time.Time, limit int, skipOnFailure []string) ([]string, error)
	// ClaimMailbox takes the lease on a mailbox for owner until
	// leaseUntil, unless another owner holds a live lease. It reports
	// whether the lease was taken.
	ClaimMailbox(ctx context.Context, mailbox, owner string, now, leaseUntil time.Time) (bool, error)
	// RenewLease extends owner's lease; false means the lease was lost.
	RenewLease(ctx context.Context, mailbox, owner string, leaseUntil time.Time) (bool, error)
	// ReleaseMailbox drops owner's lease.
	ReleaseMailbox(ctx context.Context, mailbox, owner string) error
	// NextPayloads returns up to limit rows of the mailbox with id >
	// afterID, in id order. With dueOnly, rows not due at now are left
	// out (skip-on-failure providers); otherwise every row is returned
	// and the caller stops at the first one not due.
	NextPayloads(ctx context.Context, mailbox string, afterID int64, now time.Time, dueOnly bool, limit int) ([]Payload, error)
	// DeletePayload removes a delivered row (ErrNotFound if gone).
	DeletePayload(ctx context.Context, id int64) error
	// ReschedulePayload records a failed attempt (ErrNotFound if gone).
	ReschedulePayload(ctx context.Context, id int64, attempts int, scheduleFor time.Time, lastStatus int, lastError string) error
	// DeadLetterPayload moves a row to silo_dead_letter in one
	// transaction, so it is never lost in between. The dead letter keeps
	// the payload's id, which is never reused (ErrNotFound if gone).
	DeadLetterPayload(ctx context.Context, id int64, reason string, lastStatus int, lastError string, now time.Time) error
	// RecordRegionAnswer keeps the region's answer to a callback payload
	// and, in the same statement, moves the row to mailbox (the callback
	// mailbox the drainer names for it), due at now, with attempts 0 and
	// lastStatus the region's status: from then on it waits only for its
	// POST to the response_url, and holds no other row of its old
	// mailbox. The row keeps its id. ErrNotFound if gone.
	RecordRegionAnswer(ctx context.Context, id int64, mailbox string, answer []byte, lastStatus int, now time.Time) error

	// Mailboxes lists every mailbox with its depth and head, by name.
	// NextAttemptAt is the head's schedule_for, or now when the head is
	// already due.
	Mailboxes(ctx context.Context, now time.Time) ([]MailboxStats, error)
	// DeadLetters pages dead letters by id: rows with id > after.
	DeadLetters(ctx context.Context, limit int, after int64) ([]DeadLetter, error)
	// ReplayDeadLetter moves a dead letter back to the tail of its
	// mailbox (a new id, attempts 0, due now, date_added now so that
	// max_age counts from the replay) and returns the new id. The
	// replayed row keeps its delivery key unless a pending row of the
	// mailbox already holds it, and keeps its region answer: a callback
	// the region had answered is POSTed again, the region not called.
	ReplayDeadLetter(ctx context.Context, id int64, now time.Time) (int64, error)
	// RetryMailbox makes the head of the mailbox due now: every row
	// scheduled after now becomes due now (for skip-on-failure mailboxes
	// that is every row in backoff). Attempts are kept. ErrNotFound when
	// the mailbox is empty.
	RetryMailbox(ctx context.Context, mailbox string, now time.Time) error
	// PurgeDeadLetters deletes up to batch dead letters with dead_at <
	// before and returns how many it deleted.
	PurgeDeadLetters(ctx context.Context, before time.Time, batch int) (int, error)

	// Directory reads (directory.Source) and token write-back
	// (directory.Writer) on the same engine.
	directory.Source
	directory.Writer
}

// Waker is implemented by engines that can wake other instances when
// payloads are stored (PostgreSQL LISTEN/NOTIFY). InsertPayloads does not
// notify: a NOTIFY inside the insert's transaction would hold PostgreSQL's
// global notify lock across the commit's fsync and serialise every
// capture commit behind it. Callers Notify after the commit instead
// (coalesced; a lost notification only costs the poll interval). Listen
// blocks on a dedicated connection
// and calls fn with each notified mailbox name until ctx ends, then
// returns ctx.Err(). fn runs on the listening goroutine and must not
// block. When the connection is lost, Listen reconnects with backoff and
// then calls fn("") once: wakes may have been missed, so the caller should
// look at every mailbox.
type Waker interface {
	Notify(ctx context.Context, mailboxes []string) error
	Listen(ctx context.Context, fn func(mailbox string)) error
}
