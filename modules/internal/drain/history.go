package drain

import (
	"context"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// historian is the optional part of a Store that keeps delivered
// payloads (the delivered_retention option): DeliverPayload moves a row to
// the history in the transaction that removes it from its mailbox.
type historian interface {
	DeliverPayload(ctx context.Context, id int64, d store.Delivery) error
	PurgeDelivered(ctx context.Context, before time.Time, batch int) (int, error)
}

// delivery is what the history keeps of the request that delivered a row.
type delivery struct {
	status int
	took   time.Duration
}

// removeDelivered takes a delivered row out of its mailbox: into the
// history when delivered_retention is on, else deleted. It counts the
// delivery for the status's rate.
func (t *turn) removeDelivered(ctx context.Context, p *store.Payload, dv delivery) error {
	d := t.d
	var err error
	if d.history != nil {
		// A record of what the region received: retried like the
		// DELETE it replaces (recordingStore).
		at := d.cfg.Now()
		err = d.records.record(ctx, "moving a delivered payload to the history", p.ID, true, func(ctx context.Context) error {
			return d.history.DeliverPayload(ctx, p.ID, store.Delivery{Status: dv.status, Duration: dv.took, At: at})
		})
	} else {
		err = d.st.DeletePayload(ctx, p.ID)
	}
	if err == nil {
		d.m.Delivered.Add(1)
	}
	return err
}
