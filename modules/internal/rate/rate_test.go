package rate

import (
	"testing"
	"time"
)

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestMeter(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	tests := []struct {
		name       string
		events     map[time.Duration]int // offset from start -> events
		at         time.Duration
		wantRate   float64
		wantWindow time.Duration
	}{
		{"nothing yet", nil, 10 * time.Second, 0, 10 * time.Second},
		{"a young meter divides by its age", map[time.Duration]int{time.Second: 20}, 10 * time.Second, 2, 10 * time.Second},
		{"a full window", map[time.Duration]int{5 * time.Second: 60, 70 * time.Second: 60}, 90 * time.Second, 1, time.Minute},
		{"events older than the window drop out", map[time.Duration]int{5 * time.Second: 600}, 200 * time.Second, 0, time.Minute},
		{"a bucket reused a minute later starts again", map[time.Duration]int{10 * time.Second: 600, 70 * time.Second: 6}, 71 * time.Second, 0.1, time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeClock{t: start}
			m := New(c.now)
			for off := time.Duration(0); off <= tc.at; off += time.Second {
				c.t = start.Add(off)
				m.Add(tc.events[off])
			}
			got, window := m.Rate()
			if got != tc.wantRate || window != tc.wantWindow {
				t.Fatalf("Rate() = %v over %v, want %v over %v", got, window, tc.wantRate, tc.wantWindow)
			}
		})
	}
}
