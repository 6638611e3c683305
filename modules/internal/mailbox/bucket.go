package mailbox

import (
	"sync"
	"time"
)

// Defaults of Sentry's mailbox routing (§3.3).
const (
	DefaultBucketThreshold = 3000
	BucketWindow           = time.Hour
	BucketStickiness       = 24 * time.Hour
)

// Bucketer counts webhooks per provider and integration in a fixed hourly
// window. Once an integration passes the threshold within a window, its
// mailboxes are split in buckets for the next 24 hours, so one busy
// integration drains in parallel instead of in one FIFO line.
//
// Counts are per process: Sentry shares them through Redis, but the gate
// only needs to be roughly right, and each instance's share of a busy
// integration crosses its own threshold soon enough.
type Bucketer struct {
	threshold int
	now       func() time.Time

	mu     sync.Mutex
	window time.Time // start of the current window
	counts map[bucketKey]int
	sticky map[bucketKey]time.Time // bucketing on until
}

type bucketKey struct {
	provider    string
	integration int64
}

// NewBucketer returns a Bucketer; threshold <= 0 means the default, now nil
// means time.Now.
func NewBucketer(threshold int, now func() time.Time) *Bucketer {
	if threshold <= 0 {
		threshold = DefaultBucketThreshold
	}
	if now == nil {
		now = time.Now
	}
	return &Bucketer{threshold: threshold, now: now, counts: map[bucketKey]int{}, sticky: map[bucketKey]time.Time{}}
}

// Bucket counts one webhook of the integration and returns the bucket to
// use for key, or -1 when the mailbox is not split. hasKey is false when
// the webhook has no bucket key (it is counted but never bucketed).
func (b *Bucketer) Bucket(provider string, integrationID int64, key int64, hasKey bool) int64 {
	if integrationID == 0 {
		return -1
	}
	now := b.now()
	k := bucketKey{provider, integrationID}
	b.mu.Lock()
	if now.Sub(b.window) >= BucketWindow || now.Before(b.window) {
		b.window = now.Truncate(BucketWindow)
		clear(b.counts)
		for sk, until := range b.sticky {
			if !now.Before(until) {
				delete(b.sticky, sk)
			}
		}
	}
	n := b.counts[k] + 1
	b.counts[k] = n
	on := false
	if n > b.threshold {
		b.sticky[k] = now.Add(BucketStickiness)
		on = true
	} else if until, ok := b.sticky[k]; ok {
		on = now.Before(until)
	}
	b.mu.Unlock()
	if !on || !hasKey {
		return -1
	}
	return BucketOf(key)
}

// BucketOf is the bucket of a bucket key: key % BucketCount, made
// non-negative. Providers whose mailboxes are always split (GitHub's, by
// repository and event type) use it without the hourly count.
func BucketOf(key int64) int64 {
	m := key % BucketCount
	if m < 0 {
		m = -m
	}
	return m
}
