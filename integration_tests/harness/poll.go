package harness

import (
	"fmt"
	"time"
)

// Poll calls cond until it returns true, and fails after timeout. The
// interval starts at 5ms and doubles up to 100ms: a condition that is
// almost true is seen at once, and a wait of many seconds (a drain, a
// PostgreSQL restart) costs ten checks a second, which a 2-core machine
// running other tests can afford even when cond scrapes /metrics.
func Poll(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	interval := 5 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		t := time.NewTimer(interval)
		<-t.C
		interval = min(2*interval, 100*time.Millisecond)
	}
	return nil
}
