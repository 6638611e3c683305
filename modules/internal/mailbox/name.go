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

// Name returns Sentry's newest mailbox name without the event type:
// "provider:region:subject", plus ":bucket" when bucket >= 0. Each region's
// copy of a webhook lives in its own mailbox, so a failing region never
// blocks another.
func Name(provider, region, subject string, bucket int64) string {
	var b strings.Builder
	b.Grow(len(provider) + len(region) + len(subject) + 8)
	b.WriteString(provider)
	b.WriteByte(':')
	b.WriteString(region)
	b.WriteByte(':')
	b.WriteString(subject)
	if bucket >= 0 {
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(bucket, 10))
	}
	return b.String()
}

// Parsed is a mailbox name taken apart.
type Parsed struct {
	Provider string
	Region   string
	Subject  string
	Bucket   int64 // -1 when not bucketed
}

// Parse takes a name built by Name apart.
func Parse(name string) (Parsed, bool) {
	parts := strings.Split(name, ":")
	if len(parts) < 3 || len(parts) > 4 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return Parsed{}, false
	}
	p := Parsed{Provider: parts[0], Region: parts[1], Subject: parts[2], Bucket: -1}
	if len(parts) == 4 {
		n, err := strconv.ParseInt(parts[3], 10, 64)
		if err != nil || n < 0 {
			return Parsed{}, false
		}
		p.Bucket = n
	}
	return p, true
}
