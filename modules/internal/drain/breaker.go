package drain

import (
	"sync"
	"time"
)

// breaker pauses deliveries to one region after consecutive failures that
// say "the region is unreachable" (connection errors, resets, timeouts,
// 502/503/504). While it is open the region's mailboxes wait and spend no
// attempts; a probe every probe interval closes it again as soon as the
// region gives any other answer. Times here are real (monotonic) time, not
// the store clock.
type breaker struct {
	threshold int

	mu          sync.Mutex
	failures    int
	open        bool
	probing     bool
	lastProbe   time.Time
	lastHealthy time.Time
}

func newBreaker(threshold int) *breaker { return &breaker{threshold: threshold} }

func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

// answered records an answer that proves the region is up (any status but
// 502/503/504). It reports whether this closed an open breaker.
func (b *breaker) answered(now time.Time) (closed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = 0
	b.lastHealthy = now
	if b.open {
		b.open = false
		return true
	}
	return false
}

// failed records an unreachable-class failure. It reports whether this
// opened the breaker.
func (b *breaker) failed(now time.Time) (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	if !b.open && b.failures >= b.threshold {
		b.open = true
		b.lastProbe = now // first probe one interval from now
		return true
	}
	return false
}

// answeredSince reports whether the region answered after t. A failure of a
// request that started at t while other requests to the same region were
// being answered is the payload's own failure, not the region's.
func (b *breaker) answeredSince(t time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastHealthy.After(t)
}

// startProbe reports whether a probe should be sent now, and if so marks
// one in flight; endProbe clears it.
func (b *breaker) startProbe(now time.Time, interval time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open || b.probing || now.Sub(b.lastProbe) < interval {
		return false
	}
	b.probing = true
	b.lastProbe = now
	return true
}

func (b *breaker) endProbe() {
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}
