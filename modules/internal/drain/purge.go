package drain

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// purgeBatch bounds one purge statement; purgeBatches bounds one run.
const (
	purgeBatch   = 500
	purgeBatches = 20
)

// purger deletes rows older than a retention, in bounded batches, at
// start and then every PurgeInterval: the dead letters
// (DeadLetterRetention), and the delivered history (DeliveredRetention).
type purger struct {
	purge     func(ctx context.Context, before time.Time, batch int) (int, error)
	what      string // "dead letters"
	log       *zap.Logger
	warn      *limitedLog
	retention time.Duration
	interval  time.Duration // PurgeInterval
	now       func() time.Time
}

// run purges until ctx ends.
func (p *purger) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.purgeOld(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *purger) purgeOld(ctx context.Context) {
	before := p.now().Add(-p.retention)
	total := 0
	for i := 0; i < purgeBatches && ctx.Err() == nil; i++ {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := p.purge(pctx, before, purgeBatch)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				p.warn.warn("purge:"+p.what, "purging old "+p.what+" failed", zap.Error(err))
			}
			break
		}
		total += n
		if n < purgeBatch {
			break
		}
	}
	if total > 0 {
		p.log.Info("purged old "+p.what, zap.Int("count", total), zap.Time("before", before))
	}
}
