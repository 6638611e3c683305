package drain

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// regionBreakers are the drainer's breakers, one per region it delivered
// to, with the logging and the caddy_sentry_region_breaker_open gauge of
// their openings and closings.
type regionBreakers struct {
	failures      int           // consecutive unreachable failures that open a breaker
	probeInterval time.Duration // for the log: how often an open region is probed
	m             *Metrics
	log           *zap.Logger
	// resumed is called when a breaker closes: the region's mailboxes
	// waited, so every mailbox should be looked at now.
	resumed func()

	mu       sync.Mutex
	byRegion map[string]*breaker
}

func newRegionBreakers(cfg Config, m *Metrics, log *zap.Logger, resumed func()) *regionBreakers {
	return &regionBreakers{
		failures:      cfg.BreakerFailures,
		probeInterval: cfg.BreakerProbeInterval,
		m:             m,
		log:           log,
		resumed:       resumed,
		byRegion:      make(map[string]*breaker),
	}
}

// get returns the region's breaker, made (closed, its gauge at 0) on the
// first delivery to the region.
func (rb *regionBreakers) get(region string) *breaker {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	b, ok := rb.byRegion[region]
	if !ok {
		b = newBreaker(rb.failures)
		rb.byRegion[region] = b
		rb.m.BreakerOpen.WithLabelValues(region).Set(0)
	}
	return b
}

// open reports whether deliveries to region are paused.
func (rb *regionBreakers) open(region string) bool {
	rb.mu.Lock()
	b := rb.byRegion[region]
	rb.mu.Unlock()
	return b != nil && b.isOpen()
}

// record counts what one request to region (a delivery or a probe) says
// about it on its breaker b: an unreachable-class failure, or an answer.
func (rb *regionBreakers) record(region string, b *breaker, unreachable bool) {
	if unreachable {
		if b.failed(time.Now()) {
			rb.opened(region)
		}
		return
	}
	if b.answered(time.Now()) {
		rb.closed(region)
	}
}

// dueProbes returns the open breakers whose region should be probed now,
// each marked with a probe in flight (breaker.endProbe clears it).
func (rb *regionBreakers) dueProbes(now time.Time) map[string]*breaker {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	due := make(map[string]*breaker)
	for region, b := range rb.byRegion {
		if b.startProbe(now, rb.probeInterval) {
			due[region] = b
		}
	}
	return due
}

func (rb *regionBreakers) opened(region string) {
	rb.m.BreakerOpen.WithLabelValues(region).Set(1)
	rb.log.Warn("region unreachable: deliveries paused, no attempts spent",
		zap.String("region", region), zap.Int("consecutive_failures", rb.failures),
		zap.Duration("probe_interval", rb.probeInterval))
}

func (rb *regionBreakers) closed(region string) {
	rb.m.BreakerOpen.WithLabelValues(region).Set(0)
	rb.log.Info("region reachable again: deliveries resumed", zap.String("region", region))
	rb.resumed() // its mailboxes waited: look at all of them now
}
