package store

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// The operator console's storage (docs/admin-api.md): pauses, paged and
// filtered listings, single rows, bulk replay and delete in batches, and
// the opt-in delivered history. The methods are on both engines, in
// postgres_console.go and sqlite_console.go, documented on the Postgres
// ones.

// Pause kinds: what a silo_pause row holds.
const (
	PauseRegion  = "region"
	PauseMailbox = "mailbox"
)

// ErrAlreadyReplayed is returned by ReplayDelivered for a delivered row an
// operator replayed already, unless again is set: a repeated call must not
// send a payload twice.
var ErrAlreadyReplayed = errors.New("store: delivered payload replayed already")

// Pause is a row of silo_pause: a region or a mailbox an operator paused.
type Pause struct {
	Kind     string // PauseRegion or PauseMailbox
	Name     string
	PausedAt time.Time
	PausedBy string
	Reason   string
}

// RowFilter selects rows of a listing or a bulk action. Zero fields match
// everything. Reason applies to dead letters only, Status to delivered
// rows only. Since (inclusive) and Until (exclusive) bound the table's
// time: date_added for payloads, dead_at for dead letters, delivered_at
// for delivered rows.
type RowFilter struct {
	Mailbox  string
	Provider string
	Region   string
	Reason   string
	Status   int
	Since    time.Time
	Until    time.Time
}

// Empty reports whether f matches every row.
func (f RowFilter) Empty() bool { return f == RowFilter{} }

// MailboxHead is a mailbox as the loose index scan finds it: its name and
// its head (lowest id) row.
type MailboxHead struct {
	Name        string
	HeadID      int64
	Region      string
	Provider    string
	DateAdded   time.Time
	ScheduleFor time.Time
	Attempts    int
	LastStatus  int
	LastError   string
}

// RowSummary is a payload, dead letter or delivered row without its
// headers and body: what a listing shows.
type RowSummary struct {
	ID              int64
	MailboxName     string
	Provider        string
	Region          string
	DestinationType string
	Method          string
	Path            string
	DateAdded       time.Time
	// ScheduleFor is set for pending payloads only.
	ScheduleFor time.Time
	Attempts    int
	LastStatus  int
	LastError   string
	BodySize    int64
	Answered    bool // a callback whose region answer is kept
}

// DeadLetterSummary is a dead letter in a listing.
type DeadLetterSummary struct {
	RowSummary
	Reason string
	DeadAt time.Time
}

// Delivery is what the drainer records of a delivered payload kept in
// the history.
type Delivery struct {
	Status   int           // the region's answer
	Duration time.Duration // of the request that delivered it
	At       time.Time
}

// DeliveredInfo is what the history adds to a payload.
type DeliveredInfo struct {
	Delivery
	// ReplayedAt is zero until an operator replays the row; ReplayedAs
	// is then the id of the copy.
	ReplayedAt time.Time
	ReplayedAs int64
}

// DeliveredSummary is a delivered row in a listing.
type DeliveredSummary struct {
	RowSummary
	DeliveredInfo
}

// DeliveredPayload is a whole delivered row. Its Payload.ScheduleFor is
// its DateAdded (the history keeps no schedule).
type DeliveredPayload struct {
	Payload
	DeliveredInfo
}

// DeliveredCursor is a position in the history's delivery order.
type DeliveredCursor struct {
	At time.Time
	ID int64
}

// Replayed is what one batch of a bulk replay did: how many rows it put
// back, and their mailboxes (to wake).
type Replayed struct {
	Count     int
	Mailboxes []string
}

// sqlArgs collects a statement's arguments and names their placeholders:
// $n for PostgreSQL, ?n for SQLite.
type sqlArgs struct {
	vals   []any
	dollar bool
	// time converts a time for the engine (microseconds for SQLite).
	time func(time.Time) any
}

func pgArgs() *sqlArgs { return &sqlArgs{dollar: true, time: func(t time.Time) any { return t }} }

func sqliteArgs() *sqlArgs { return &sqlArgs{time: func(t time.Time) any { return micros(t) }} }

// add appends v and returns its placeholder.
func (a *sqlArgs) add(v any) string {
	if t, ok := v.(time.Time); ok {
		v = a.time(t)
	}
	a.vals = append(a.vals, v)
	n := strconv.Itoa(len(a.vals))
	if a.dollar {
		return "$" + n
	}
	return "?" + n
}

// where renders f as SQL conditions over a table whose time column is
// timeColumn, each value a placeholder of a, joined with AND ("true" when
// f is empty). Only the filters set are rendered, so each combination is
// its own statement with its own plan (one generic statement whose
// filters could each be off would get a plan that uses no index).
func (f RowFilter) where(a *sqlArgs, timeColumn string, more ...string) string {
	c := more
	if f.Mailbox != "" {
		c = append(c, "mailbox_name = "+a.add(f.Mailbox))
	}
	if f.Provider != "" {
		c = append(c, "provider = "+a.add(f.Provider))
	}
	if f.Region != "" {
		c = append(c, "region_name = "+a.add(f.Region))
	}
	if f.Reason != "" {
		c = append(c, "reason = "+a.add(f.Reason))
	}
	if f.Status != 0 {
		c = append(c, "status = "+a.add(f.Status))
	}
	if !f.Since.IsZero() {
		c = append(c, timeColumn+" >= "+a.add(f.Since))
	}
	if !f.Until.IsZero() {
		c = append(c, timeColumn+" < "+a.add(f.Until))
	}
	if len(c) == 0 {
		return "true"
	}
	return strings.Join(c, " AND ")
}

// summaryColumns are what a RowSummary scans, in scanSummary's order, for
// every table; each table's own columns follow. bodySize is the engine's
// byte length of request_body (PostgreSQL's octet_length reads it from
// the TOAST header without decompressing).
func summaryColumns(bodySize string) string {
	return `id, mailbox_name, coalesce(provider, ''), destination_type, coalesce(region_name, ''),
	request_method, request_path, date_added, attempts, last_status, last_error, ` + bodySize + `(request_body),
	region_answer IS NOT NULL`
}

// summaryDest are the scan targets of summaryColumns; addedAt receives
// date_added (a time or microseconds, per engine).
func summaryDest(s *RowSummary, addedAt any) []any {
	return []any{&s.ID, &s.MailboxName, &s.Provider, &s.DestinationType, &s.Region,
		&s.Method, &s.Path, addedAt, &s.Attempts, &s.LastStatus, &s.LastError, &s.BodySize, &s.Answered}
}

// Bulk replays keep a delivery key unless a pending row of the mailbox
// holds it, or an earlier row of the same batch takes it (two dead
// letters of one mailbox can share a key: a provider's redelivery of a
// payload that died first). replayKey is that choice in SQL, for a batch
// row r with its rank k among the batch's rows of its (mailbox, key).
const replayKey = `CASE WHEN r.delivery_key IS NULL OR r.k > 1 OR EXISTS (SELECT 1 FROM silo_webhook_payload p
	WHERE p.mailbox_name = r.mailbox_name AND p.delivery_key = r.delivery_key) THEN NULL ELSE r.delivery_key END`

// replayRank numbers a batch's rows within their (mailbox, key) in replay
// order (their rank in the batch), for replayKey.
const replayRank = `row_number() OVER (PARTITION BY mailbox_name, delivery_key ORDER BY rank) AS k`

// distinct returns names without repeats, in first-seen order.
func distinct(names []string) []string {
	seen := make(map[string]bool, len(names))
	out := names[:0:0]
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
