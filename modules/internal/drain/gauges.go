package drain

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// gauges refreshes the depth and oldest-age gauges from the store. Every
// instance reads the whole store, so each reports the same numbers; the
// gauges are not a sum over instances.
type gauges struct {
	st       Store
	m        *Metrics
	warn     *limitedLog
	interval time.Duration // GaugeInterval
	now      func() time.Time
}

// run refreshes the gauges at start and then every interval until ctx
// ends.
func (g *gauges) run(ctx context.Context) {
	t := time.NewTicker(g.interval)
	defer t.Stop()
	seen := make(map[string]bool)
	for {
		g.refresh(ctx, seen)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh sets each region's gauges, and zeroes those of the regions seen
// before that have no mailbox any more (up to 1,000 regions are
// remembered).
func (g *gauges) refresh(ctx context.Context, seen map[string]bool) {
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	boxes, err := g.st.Mailboxes(gctx, g.now())
	if err != nil {
		if ctx.Err() == nil {
			g.warn.warn("gauges", "reading mailbox stats failed", zap.Error(err))
		}
		return
	}
	depth := make(map[string]float64)
	oldest := make(map[string]float64)
	for _, b := range boxes {
		depth[b.Region] += float64(b.Depth)
		if b.OldestAge > oldest[b.Region] {
			oldest[b.Region] = b.OldestAge
		}
	}
	for region := range seen {
		if _, ok := depth[region]; !ok {
			g.m.Depth.WithLabelValues(region).Set(0)
			g.m.OldestAge.WithLabelValues(region).Set(0)
		}
	}
	for region, n := range depth {
		if len(seen) < 1000 {
			seen[region] = true
		}
		g.m.Depth.WithLabelValues(region).Set(n)
		g.m.OldestAge.WithLabelValues(region).Set(oldest[region])
	}
}
