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

// purger deletes dead letters older than DeadLetterRetention, in bounded
// batches, at start and then every PurgeInterval.
type purger struct {
	st        Store
	log       *zap.Logger
	warn      *limitedLog
	retention time.Duration // DeadLetterRetention
	interval  time.Duration // PurgeInterval
	now       func() time.Time
}

// run purges until ctx ends.
func (p *purger) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.purge(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *purger) purge(ctx context.Context) {
	before := p.now().Add(-p.retention)
	total := 0
	for i := 0; i < purgeBatches && ctx.Err() == nil; i++ {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := p.st.PurgeDeadLetters(pctx, before, purgeBatch)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				p.warn.warn("purge", "purging old dead letters failed", zap.Error(err))
			}
			break
		}
		total += n
		if n < purgeBatch {
			break
		}
	}
	if total > 0 {
		p.log.Info("purged old dead letters", zap.Int("count", total), zap.Time("dead_before", before))
	}
}
