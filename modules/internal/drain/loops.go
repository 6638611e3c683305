package drain

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
)

// probeLoop sends one probe per probe interval to each region whose
// breaker is open.
func (d *Drainer) probeLoop(ctx context.Context) {
	tick := min(max(d.cfg.BreakerProbeInterval/5, 5*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		d.bmu.Lock()
		due := make(map[string]*breaker)
		for region, b := range d.breakers {
			if b.startProbe(now, d.cfg.BreakerProbeInterval) {
				due[region] = b
			}
		}
		d.bmu.Unlock()
		for region, b := range due {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer b.endProbe()
				d.probe(ctx, region, b)
			}()
		}
	}
}

// probe asks a region for ProbePath. Any answer but 502/503/504 means the
// region is back.
func (d *Drainer) probe(ctx context.Context, region string, b *breaker) {
	base, ok := d.regions(region)
	if !ok {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, httpx.JoinURL(base, d.cfg.ProbePath), nil)
	if err != nil {
		return
	}
	req.Header.Set("User-Agent", "caddy-silo-drainer-probe")
	resp, err := d.client.Do(req)
	if err != nil {
		if c := d.log.Check(zap.DebugLevel, "region probe failed"); c != nil {
			c.Write(zap.String("region", region), zap.String("error", transportError(err, pctx)))
		}
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, discardBody))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if c := d.log.Check(zap.DebugLevel, "region probe answered unavailable"); c != nil {
			c.Write(zap.String("region", region), zap.Int("status", resp.StatusCode))
		}
		return
	}
	if b.answered(time.Now()) {
		d.breakerClosed(region)
	}
}

// gaugeLoop refreshes the depth and oldest-age gauges from the store.
func (d *Drainer) gaugeLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.GaugeInterval)
	defer t.Stop()
	seen := make(map[string]bool)
	for {
		d.refreshGauges(ctx, seen)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Drainer) refreshGauges(ctx context.Context, seen map[string]bool) {
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	boxes, err := d.st.Mailboxes(gctx, d.cfg.Now())
	if err != nil {
		if ctx.Err() == nil {
			d.logLimited("gauges", "reading mailbox stats failed", zap.Error(err))
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
			d.m.Depth.WithLabelValues(region).Set(0)
			d.m.OldestAge.WithLabelValues(region).Set(0)
		}
	}
	for region, n := range depth {
		if len(seen) < 1000 {
			seen[region] = true
		}
		d.m.Depth.WithLabelValues(region).Set(n)
		d.m.OldestAge.WithLabelValues(region).Set(oldest[region])
	}
}

// purgeBatch bounds one purge statement; purgeBatches bounds one run.
const (
	purgeBatch   = 500
	purgeBatches = 20
)

// purgeLoop deletes dead letters older than DeadLetterRetention, in bounded
// batches, at start and then every PurgeInterval.
func (d *Drainer) purgeLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.PurgeInterval)
	defer t.Stop()
	for {
		d.purge(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Drainer) purge(ctx context.Context) {
	before := d.cfg.Now().Add(-d.cfg.DeadLetterRetention)
	total := 0
	for i := 0; i < purgeBatches && ctx.Err() == nil; i++ {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := d.st.PurgeDeadLetters(pctx, before, purgeBatch)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				d.logLimited("purge", "purging old dead letters failed", zap.Error(err))
			}
			break
		}
		total += n
		if n < purgeBatch {
			break
		}
	}
	if total > 0 {
		d.log.Info("purged old dead letters", zap.Int("count", total), zap.Time("dead_before", before))
	}
}

// listener is the optional part of a Store that hears of the payloads
// other instances store (PostgreSQL LISTEN/NOTIFY: store.Waker's Listen).
// Listen calls fn with each notified mailbox name until ctx ends, and
// fn("") when wakes may have been missed. The drainer listens when its
// store has it; without it, other instances' captures are found by the
// backstop scan.
type listener interface {
	Listen(ctx context.Context, fn func(mailbox string)) error
}

// listen wakes this drainer for payloads other instances store (PostgreSQL
// LISTEN/NOTIFY), reconnecting with backoff.
func (d *Drainer) listen(ctx context.Context, w listener) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		started := time.Now()
		err := w.Listen(ctx, func(mailbox string) {
			if mailbox == "" {
				d.Wake()
				return
			}
			d.Wake(mailbox)
		})
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		d.logLimited("listen", "listening for wakes failed; polling meanwhile", zap.Error(err))
		d.Wake() // wakes may have been missed
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}
