// Package mailbox names the mailboxes captured webhooks are stored in,
// decides when a busy integration's mailbox is split in buckets (§3.3), and
// commits concurrent captures together (group commit). Nothing here imports
// Caddy.
package mailbox

import (
	"strconv"
	"strings"
)

// BucketCount is how many buckets a busy integration's mailbox is split in.
const BucketCount = 100

// Name returns the name of a mailbox with no event type:
// "provider:region:subject", plus ":bucket" when bucket >= 0. Each region's
// copy of a webhook lives in its own mailbox, so a failing region never
// blocks another.
func Name(provider, region, subject string, bucket int64) string {
	return EventName(provider, region, subject, bucket, "")
}

// EventName is Name with Sentry's event-type suffix, the newest form
// "provider:region:subject[:bucket][:event_type]" (github:us:123:17:push).
// eventType must be one of the provider's fixed list
// (webhooks.MailboxEventType vets it: it comes from a body nobody has
// verified yet, and an open set would make mailboxes without bound); ""
// is no suffix. It is the one writer of mailbox names; Parse the one
// reader.
func EventName(provider, region, subject string, bucket int64, eventType string) string {
	var b strings.Builder
	b.Grow(len(provider) + len(region) + len(subject) + len(eventType) + 8)
	b.WriteString(provider)
	b.WriteByte(':')
	b.WriteString(region)
	b.WriteByte(':')
	b.WriteString(subject)
	if bucket >= 0 {
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(bucket, 10))
	}
	if eventType != "" {
		b.WriteByte(':')
		b.WriteString(eventType)
	}
	return b.String()
}

// Parsed is a mailbox name taken apart.
type Parsed struct {
	Provider  string
	Region    string
	Subject   string
	Bucket    int64  // -1 when not bucketed
	EventType string // "" when the name has none
}

// Parse takes a mailbox name apart. It is the one reader of mailbox
// names; EventName (and Name) their one writer.
//
// It reads Sentry's newest form, provider:region:subject[:bucket][:event_type]:
// EventName's names (callback mailboxes included, whose subject is
// "callback-<id>"), with the event type appended for the providers that
// split their mailboxes by event (github:us:123:17:push), and the names
// stored before that suffix existed (github:us:123:17), which read the same
// with no event type, so rows stored under them still drain. A
// bucket is a decimal number and an event type starts with a letter, so a
// fourth part is never both. Every other name (Sentry's legacy
// provider:identifier such as github:123, or a name no version builds)
// reports false; Provider is then still the part before the first colon
// (the whole name when it has none), because a provider's rules (skip on
// failure) apply to its mailboxes whatever their form.
func Parse(name string) (Parsed, bool) {
	provider, rest, _ := strings.Cut(name, ":")
	legacy := Parsed{Provider: provider, Bucket: -1}
	parts := strings.Split(rest, ":")
	if len(parts) < 2 || len(parts) > 4 || provider == "" || parts[0] == "" || parts[1] == "" {
		return legacy, false
	}
	p := Parsed{Provider: provider, Region: parts[0], Subject: parts[1], Bucket: -1}
	extra := parts[2:]
	if len(extra) > 0 {
		if n, ok := parseBucket(extra[0]); ok {
			p.Bucket = n
			extra = extra[1:]
		}
	}
	switch {
	case len(extra) == 1 && isEventType(extra[0]):
		p.EventType = extra[0]
	case len(extra) > 0:
		return legacy, false
	}
	return p, true
}

// parseBucket reads a bucket: decimal digits only (no sign), as Name
// writes it.
func parseBucket(s string) (int64, bool) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// isEventType reports whether s can be an event type: Sentry's are
// provider event names (push, pull_request, ...), so one starts with a
// letter and is never read for a bucket.
func isEventType(s string) bool {
	if s == "" {
		return false
	}
	c := s[0]
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}
