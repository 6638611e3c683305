package regionroute

import "sync/atomic"

// limiter caps the requests in flight to one region (apigw's semaphore):
// past the cap the gateway answers 429 at once instead of queueing, so a
// slow region cannot pile up connections and goroutines.
type limiter struct {
	max      int64
	inflight atomic.Int64
}

func (l *limiter) acquire() bool {
	if l.inflight.Add(1) > l.max {
		l.inflight.Add(-1)
		return false
	}
	return true
}

func (l *limiter) release() { l.inflight.Add(-1) }

// breaker is apigw's failure window: failures (connect errors, timeouts,
// upstream 502/503/504) are counted in the current window; once a window
// holds more than max failures, requests to the region are refused with
// 503 until the window turns. Windows turn every window duration, and a
// turn starts from zero, so a dead region costs at most max+1 slow
// requests per window. Lock-free: one atomic load on the hot path.
type breaker struct {
	max    int64
	window int64 // nanoseconds

	start    atomic.Int64 // start of the current window, unix nanos
	failures atomic.Int64 // in the current window
}

// turn starts a new window when the current one is over. Of concurrent
// callers, one wins the CAS and resets the count.
func (b *breaker) turn(now int64) {
	s := b.start.Load()
	if now-s < b.window {
		return
	}
	if b.start.CompareAndSwap(s, now) {
		b.failures.Store(0)
	}
}

// allow reports whether the region is open to requests at now.
func (b *breaker) allow(now int64) bool {
	b.turn(now)
	return b.failures.Load() <= b.max
}

// fail records one failure at now.
func (b *breaker) fail(now int64) {
	b.turn(now)
	b.failures.Add(1)
}
