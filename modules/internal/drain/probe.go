package drain

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
)

// prober sends one probe per probe interval to each region whose breaker
// is open: that is how a paused region is found back, since its mailboxes
// send nothing while they wait.
type prober struct {
	breakers *regionBreakers
	regions  func(name string) (*url.URL, bool)
	client   *http.Client
	path     string        // ProbePath
	interval time.Duration // BreakerProbeInterval
	timeout  time.Duration // RequestTimeout
	log      *zap.Logger
}

// run probes until ctx ends.
func (p *prober) run(ctx context.Context) {
	tick := min(max(p.interval/5, 5*time.Millisecond), time.Second)
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
		for region, b := range p.breakers.dueProbes(time.Now()) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer b.endProbe()
				p.probe(ctx, region, b)
			}()
		}
	}
}

// probe asks a region for ProbePath. Any answer but 502/503/504 means the
// region is back.
func (p *prober) probe(ctx context.Context, region string, b *breaker) {
	base, ok := p.regions(region)
	if !ok {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, httpx.JoinURL(base, p.path), nil)
	if err != nil {
		return
	}
	req.Header.Set("User-Agent", "caddy-silo-drainer-probe")
	resp, err := p.client.Do(req)
	if err != nil {
		if c := p.log.Check(zap.DebugLevel, "region probe failed"); c != nil {
			c.Write(zap.String("region", region), zap.String("error", transportError(err, pctx)))
		}
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, discardBody))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if c := p.log.Check(zap.DebugLevel, "region probe answered unavailable"); c != nil {
			c.Write(zap.String("region", region), zap.Int("status", resp.StatusCode))
		}
		return
	}
	p.breakers.record(region, b, false)
}
