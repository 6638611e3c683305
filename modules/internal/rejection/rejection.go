// Package rejection counts the requests a handler refuses, by provider and
// reason, and logs them at info, so that an operator can see why a
// provider or a region is being answered 4xx: the answer itself stays what
// Sentry answers (often an empty 400), which says nothing. Nothing here
// imports Caddy.
package rejection

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Every is the least time between two log lines of one provider and
// reason. A flood of forged requests (one reason, thousands a second) must
// not flood the log; the counter counts every one, and each line says how
// many of its kind went unlogged since the last.
const Every = time.Second

// Log records rejections. Safe for concurrent use; the zero value is not
// usable, build one with New.
type Log struct {
	logger  *zap.Logger
	msg     string
	counter *prometheus.CounterVec
	now     func() time.Time

	mu         sync.Mutex
	last       map[key]time.Time
	suppressed map[key]int
}

type key struct{ provider, reason string }

// New returns a Log that writes msg at info to logger and counts into
// counter, whose labels are provider and reason, in that order. Both
// labels must come from bounded sets (the caller's provider and reason
// names), which also bounds what Log keeps.
func New(logger *zap.Logger, msg string, counter *prometheus.CounterVec) *Log {
	return &Log{logger: logger, msg: msg, counter: counter, now: time.Now,
		last: map[key]time.Time{}, suppressed: map[key]int{}}
}

// Reject counts one rejection and logs it, unless a line for the same
// provider and reason was written less than Every ago. fields must never
// hold a body, a secret or a signature.
func (l *Log) Reject(provider, reason string, fields ...zap.Field) {
	l.counter.WithLabelValues(provider, reason).Inc()
	k := key{provider, reason}
	now := l.now()
	l.mu.Lock()
	if last, ok := l.last[k]; ok && now.Sub(last) < Every {
		l.suppressed[k]++
		l.mu.Unlock()
		return
	}
	skipped := l.suppressed[k]
	l.last[k] = now
	l.suppressed[k] = 0
	l.mu.Unlock()
	all := append([]zap.Field{zap.String("provider", provider), zap.String("reason", reason)}, fields...)
	if skipped > 0 {
		all = append(all, zap.Int("not_logged_since_last", skipped))
	}
	l.logger.Info(l.msg, all...)
}
