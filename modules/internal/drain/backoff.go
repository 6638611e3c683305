package drain

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// backoff is Sentry's schedule_next_attempt delay for a row that has now
// failed attempts times: min(base * rate^attempts, cap). With the defaults
// the first failure waits 4.2 min, the ninth and later 60 min.
func (c *Config) backoff(attempts int) time.Duration {
	d := float64(c.BackoffBase) * math.Pow(c.BackoffRate, float64(attempts))
	if d >= float64(c.BackoffCap) || math.IsInf(d, 0) || math.IsNaN(d) {
		return c.BackoffCap
	}
	// Round to the millisecond: 3m * 1.4 is 4m12s, not 4m11.999999999s.
	return time.Duration(math.Round(d/float64(time.Millisecond))) * time.Millisecond
}

// retryDelay is the delay after a charged failure: the backoff, lengthened
// by a Retry-After the region sent with a 429 or 503, never past the cap.
func (c *Config) retryDelay(attempts int, retryAfter time.Duration) time.Duration {
	d := c.backoff(attempts)
	if retryAfter > d {
		d = retryAfter
	}
	if d > c.BackoffCap {
		d = c.BackoffCap
	}
	return d
}

// parseRetryAfter reads a Retry-After header (delay-seconds or an
// HTTP-date) relative to now; 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(math.MaxInt64/int64(time.Second)) {
			return time.Duration(math.MaxInt64)
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
