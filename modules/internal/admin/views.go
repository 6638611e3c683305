package admin

import (
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// The answers' shapes, as docs/admin-api.md ("Shapes") documents them:
// fields may be added, never renamed or removed.

// PauseView is a pause in force.
type PauseView struct {
	Kind     string    `json:"kind"`
	Name     string    `json:"name"`
	PausedAt time.Time `json:"paused_at"`
	PausedBy string    `json:"paused_by"`
	Reason   string    `json:"reason"`
}

func pauseView(p store.Pause) *PauseView {
	return &PauseView{Kind: p.Kind, Name: p.Name, PausedAt: p.PausedAt.UTC(), PausedBy: p.PausedBy, Reason: p.Reason}
}

// RegionView is one line of GET /sentry_silo/regions.
type RegionView struct {
	Name string `json:"name"`
	// BreakerOpen is true while this instance's drainer holds the region
	// by itself (it looked unreachable; probes run).
	BreakerOpen bool `json:"breaker_open"`
	// Paused is the operator's pause of the region, nil when none.
	Paused *PauseView `json:"paused"`
}

// MailboxView is one mailbox.
type MailboxView struct {
	Name     string `json:"name"`
	Region   string `json:"region"`
	Provider string `json:"provider"`
	// Depth is exact up to the listing's depth cap; DepthCapped says
	// the mailbox holds at least that many.
	Depth         int64      `json:"depth"`
	DepthCapped   bool       `json:"depth_capped"`
	OldestAge     float64    `json:"oldest_age_seconds"`
	HeadID        int64      `json:"head_id"`
	HeadAttempts  int        `json:"head_attempts"`
	HeadStatus    int        `json:"head_last_status"`
	HeadError     string     `json:"head_last_error"`
	NextAttemptAt time.Time  `json:"next_attempt_at"`
	Paused        *PauseView `json:"paused"`
}

// mailboxView renders a head; depth is its capped count.
func mailboxView(h store.MailboxHead, depth int64, depthCap int, now time.Time, paused *PauseView) MailboxView {
	next := h.ScheduleFor
	if next.Before(now) {
		next = now
	}
	return MailboxView{
		Name: h.Name, Region: h.Region, Provider: h.Provider,
		Depth: depth, DepthCapped: depth >= int64(depthCap),
		OldestAge: max(0, now.Sub(h.DateAdded).Seconds()),
		HeadID:    h.HeadID, HeadAttempts: h.Attempts, HeadStatus: h.LastStatus, HeadError: h.LastError,
		NextAttemptAt: next.UTC(), Paused: paused,
	}
}

// RowView is what every row listing shows of a row.
type RowView struct {
	ID          int64     `json:"id"`
	Mailbox     string    `json:"mailbox"`
	Region      string    `json:"region"`
	Provider    string    `json:"provider"`
	Destination string    `json:"destination"`
	Method      string    `json:"method"`
	Path        string    `json:"path"` // masked
	DateAdded   time.Time `json:"date_added"`
	Attempts    int       `json:"attempts"`
	LastStatus  int       `json:"last_status"`
	LastError   string    `json:"last_error"`
	BodySize    int64     `json:"body_size"`
	// RegionAnswered is set on a callback the region answered: the row
	// keeps the answer, and a replay only POSTs it again.
	RegionAnswered bool `json:"region_answered"`
}

func rowView(s store.RowSummary) RowView {
	return RowView{
		ID: s.ID, Mailbox: s.MailboxName, Region: s.Region, Provider: s.Provider, Destination: s.DestinationType,
		Method: s.Method, Path: maskPath(s.Path), DateAdded: s.DateAdded.UTC(), Attempts: s.Attempts,
		LastStatus: s.LastStatus, LastError: s.LastError, BodySize: s.BodySize, RegionAnswered: s.Answered,
	}
}

// payloadRowView is rowView of a whole row.
func payloadRowView(p store.Payload) RowView {
	return rowView(store.RowSummary{
		ID: p.ID, MailboxName: p.MailboxName, Provider: p.Provider, Region: p.Region, DestinationType: p.DestinationType,
		Method: p.Method, Path: p.Path, DateAdded: p.DateAdded, Attempts: p.Attempts, LastStatus: p.LastStatus,
		LastError: p.LastError, BodySize: int64(len(p.Body)), Answered: p.Answered,
	})
}

// PayloadView is a pending payload.
type PayloadView struct {
	RowView
	NextAttemptAt time.Time `json:"next_attempt_at"`
}

// DeadLetterView is a dead letter.
type DeadLetterView struct {
	RowView
	Reason string    `json:"reason"`
	DeadAt time.Time `json:"dead_at"`
}

// DeliveredView is a row of the delivered history.
type DeliveredView struct {
	RowView
	DeliveredAt time.Time  `json:"delivered_at"`
	Status      int        `json:"status"`
	DurationMS  float64    `json:"duration_ms"`
	ReplayedAt  *time.Time `json:"replayed_at"`
	ReplayedAs  *int64     `json:"replayed_as"`
}

func deliveredView(r RowView, d store.DeliveredInfo) DeliveredView {
	v := DeliveredView{RowView: r, DeliveredAt: d.At.UTC(), Status: d.Status, DurationMS: float64(d.Duration.Microseconds()) / 1000}
	if !d.ReplayedAt.IsZero() {
		at, as := d.ReplayedAt.UTC(), d.ReplayedAs
		v.ReplayedAt, v.ReplayedAs = &at, &as
	}
	return v
}

// DetailView is what opening a row adds to its listing object.
type DetailView struct {
	Headers          map[string][]string `json:"headers"` // masked
	Body             BodyView            `json:"body"`
	DeliveryKey      string              `json:"delivery_key"`
	CallbackURL      string              `json:"callback_url"` // masked
	RegionAnswerSize *int                `json:"region_answer_size"`
}

func detailView(p store.Payload) DetailView {
	v := DetailView{
		Headers:     maskHeaders(p.Headers),
		Body:        bodyView(p.Body, p.Headers.Get("Content-Type")),
		DeliveryKey: p.DeliveryKey,
		CallbackURL: maskCallbackURL(p.CallbackURL),
	}
	if p.Answered {
		n := len(p.RegionAnswer)
		v.RegionAnswerSize = &n
	}
	return v
}

// timeOrNil is t, or nil for the zero time.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
