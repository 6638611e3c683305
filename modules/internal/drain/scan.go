package drain

import (
	"context"

	"go.uber.org/zap"
)

// scan asks the store for due mailboxes (the backstop for lost wakes,
// retries coming due and other instances' captures). Mailboxes of a region
// whose breaker is open are due but wait; when they fill most of a page,
// the scan looks further so other regions' mailboxes are not starved by a
// long outage.
func (d *Drainer) scan(ctx context.Context) {
	limit := d.cfg.ScanLimit
	for try := 0; try < 3 && ctx.Err() == nil; try++ {
		sctx, cancel := context.WithTimeout(ctx, d.cfg.opTimeout())
		names, err := d.st.DueMailboxes(sctx, d.cfg.Now(), limit, d.cfg.SkipOnFailure)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				d.warn.warn("scan", "listing due mailboxes failed", zap.Error(err))
			}
			return
		}
		blocked := d.work.addDue(names)
		if len(names) < limit || blocked < len(names)/2 {
			return
		}
		limit *= 4
	}
}
