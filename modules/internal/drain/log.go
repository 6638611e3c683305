package drain

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// logEvery is how often one kind of warning may be logged.
const logEvery = 10 * time.Second

// limitedLog logs a warning at most once per logEvery per key, so an
// outage (every scan, claim and write failing) does not flood the log.
type limitedLog struct {
	log *zap.Logger

	mu   sync.Mutex
	last map[string]time.Time
}

func newLimitedLog(log *zap.Logger) *limitedLog {
	return &limitedLog{log: log, last: make(map[string]time.Time)}
}

// warn logs msg unless a warning with this key was logged less than
// logEvery ago.
func (l *limitedLog) warn(key, msg string, fields ...zap.Field) {
	now := time.Now()
	l.mu.Lock()
	last, seen := l.last[key]
	if seen && now.Sub(last) < logEvery {
		l.mu.Unlock()
		return
	}
	if len(l.last) > 10_000 {
		clear(l.last)
	}
	l.last[key] = now
	l.mu.Unlock()
	l.log.Warn(msg, fields...)
}
