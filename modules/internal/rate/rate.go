// Package rate measures events per second over the last minute, for the
// admin API's status (captures stored, payloads delivered): a process's
// own counters, without Prometheus in between. Nothing here imports Caddy.
package rate

import (
	"sync"
	"time"
)

// Window is how far back a Meter looks.
const Window = time.Minute

// buckets is one per second of the window.
const buckets = int(Window / time.Second)

// Meter counts events in one-second buckets over the last Window. The
// zero value is not usable; build one with New. Safe for concurrent use;
// Add is a mutex and two stores, cheap beside the database commit each
// event stands for.
type Meter struct {
	now   func() time.Time
	start time.Time

	mu sync.Mutex
	// sec[i] is the unix second bucket i counts for; n[i] its count.
	sec [buckets]int64
	n   [buckets]int64
}

// New returns a Meter started now. now is the clock; nil means time.Now.
func New(now func() time.Time) *Meter {
	if now == nil {
		now = time.Now
	}
	return &Meter{now: now, start: now()}
}

// Add counts n events now.
func (m *Meter) Add(n int) {
	if n <= 0 {
		return
	}
	s := m.now().Unix()
	i := int(s % int64(buckets))
	m.mu.Lock()
	if m.sec[i] != s {
		m.sec[i], m.n[i] = s, 0
	}
	m.n[i] += int64(n)
	m.mu.Unlock()
}

// Rate returns the events per second over the last Window, and the
// window it covers: shorter than Window until the meter is a Window old.
func (m *Meter) Rate() (perSecond float64, window time.Duration) {
	now := m.now()
	window = min(Window, now.Sub(m.start))
	if window <= 0 {
		return 0, 0
	}
	s := now.Unix()
	var total int64
	m.mu.Lock()
	for i := range m.sec {
		if m.sec[i] > s-int64(buckets) && m.sec[i] <= s {
			total += m.n[i]
		}
	}
	m.mu.Unlock()
	return float64(total) / window.Seconds(), window
}
