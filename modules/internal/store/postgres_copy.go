package store

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// pgCopyThreshold is the batch size from which InsertPayloads goes through
// COPY: below it one statement per row in a pgx.Batch is faster, above it
// COPY's bulk transfer wins (BenchmarkInsertPayloadsPostgres).
const pgCopyThreshold = 64

// pgCopyColumns are the columns COPY fills in silo_payload_in.
var pgCopyColumns = []string{"ord", "mailbox_name", "provider", "destination_type", "region_name", "integration_id",
	"callback_url", "request_method", "request_path", "request_headers", "request_body", "delivery_key"}

// pgCopyInsert moves the staged batch into the payload table in batch
// order (ids follow it), skipping duplicates of pending rows.
const pgCopyInsert = `
INSERT INTO silo_webhook_payload (mailbox_name, provider, destination_type, region_name, integration_id,
	callback_url, request_method, request_path, request_headers, request_body, delivery_key)
SELECT mailbox_name, provider, destination_type, region_name, integration_id,
	callback_url, request_method, request_path, request_headers, request_body, delivery_key
FROM silo_payload_in ORDER BY ord
ON CONFLICT (mailbox_name, delivery_key) WHERE delivery_key IS NOT NULL DO NOTHING
RETURNING id, mailbox_name, coalesce(delivery_key, '')`

// pgPendingKeys reads the ids of the pending rows holding keys, one index
// probe each.
const pgPendingKeys = `
SELECT k.m, k.d, (SELECT p.id FROM silo_webhook_payload p WHERE p.mailbox_name = k.m AND p.delivery_key = k.d)
FROM unnest($1::text[], $2::text[]) AS k(m, d)`

// insertCopy is InsertPayloads for large batches: in one transaction, COPY
// into a session-local staging table, INSERT ... SELECT from it, read the
// ids of the pending rows that keyed payloads duplicate, NOTIFY.
func (p *Postgres) insertCopy(ctx context.Context, payloads []NewPayload, headers []string, mailboxes []string) ([]InsertResult, error) {
	rows := make([][]any, len(payloads))
	for i := range payloads {
		pl := &payloads[i]
		body := pl.Body
		if body == nil {
			body = []byte{}
		}
		var integration *int64
		if pl.IntegrationID != 0 {
			integration = &pl.IntegrationID
		}
		rows[i] = []any{int32(i), pl.MailboxName, nullString(pl.Provider), destinationOf(pl), pl.Region, integration,
			nullString(pl.CallbackURL), pl.Method, pl.Path, headers[i], body, nullString(pl.DeliveryKey)}
	}
	var res []InsertResult
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		// ON COMMIT DELETE ROWS empties it for the connection's next batch;
		// the table lives as long as the pooled connection.
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS silo_payload_in (
			ord integer, mailbox_name text, provider text, destination_type text, region_name text,
			integration_id bigint, callback_url text, request_method text, request_path text,
			request_headers text, request_body bytea, delivery_key text) ON COMMIT DELETE ROWS`); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"silo_payload_in"}, pgCopyColumns, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		r, err := tx.Query(ctx, pgCopyInsert)
		if err != nil {
			return err
		}
		inserted, err := pgx.CollectRows(r, func(r pgx.CollectableRow) (insertedRow, error) {
			ir := insertedRow{inserted: true}
			return ir, r.Scan(&ir.id, &ir.mailbox, &ir.key)
		})
		if err != nil {
			return err
		}
		if len(inserted) < len(payloads) {
			// Some keyed payloads were duplicates: find their rows.
			var ms, ks []string
			for i := range payloads {
				if payloads[i].DeliveryKey != "" {
					ms, ks = append(ms, payloads[i].MailboxName), append(ks, payloads[i].DeliveryKey)
				}
			}
			r, err := tx.Query(ctx, pgPendingKeys, ms, ks)
			if err != nil {
				return err
			}
			pending, err := pgx.CollectRows(r, func(r pgx.CollectableRow) (insertedRow, error) {
				var ir insertedRow
				var id *int64
				err := r.Scan(&ir.mailbox, &ir.key, &id)
				if id != nil {
					ir.id = *id
				}
				return ir, err
			})
			if err != nil {
				return err
			}
			inserted = append(inserted, pending...)
		}
		if _, err := tx.Exec(ctx, pgNotifyMailboxes, mailboxes); err != nil {
			return err
		}
		// A duplicate whose pending row was delivered meanwhile keeps ID 0.
		res, _, err = matchInserted(payloads, inserted)
		return err
	})
	if err != nil {
		return nil, pgErr("postgres insert payloads", err)
	}
	return res, nil
}

// insertedRow is one row of an insert's answer: a new row (inserted) or a
// pending row a keyed payload duplicates.
type insertedRow struct {
	id       int64
	mailbox  string
	key      string
	inserted bool
}

// matchInserted maps an insert's answer back to the batch. New rows got
// ids in batch order, so the unkeyed ones pair with the unkeyed payloads
// in id order; keyed payloads are matched by (mailbox, key), the first
// payload of a key being the one inserted. It returns the indexes of
// duplicates whose pending row's id is not known yet.
func matchInserted(payloads []NewPayload, rows []insertedRow) ([]InsertResult, []int, error) {
	newByKey := map[dedupKey]int64{}
	pending := map[dedupKey]int64{}
	var unkeyed []int64
	for _, r := range rows {
		switch {
		case r.inserted && r.key == "":
			unkeyed = append(unkeyed, r.id)
		case r.inserted:
			newByKey[dedupKey{r.mailbox, r.key}] = r.id
		case r.id != 0:
			pending[dedupKey{r.mailbox, r.key}] = r.id
		}
	}
	slices.Sort(unkeyed)
	res := make([]InsertResult, len(payloads))
	taken := map[dedupKey]bool{}
	var missing []int
	for i := range payloads {
		pl := &payloads[i]
		if pl.DeliveryKey == "" {
			if len(unkeyed) == 0 {
				return nil, nil, fmt.Errorf("insert payloads: fewer rows inserted than payloads without delivery key")
			}
			res[i].ID, unkeyed = unkeyed[0], unkeyed[1:]
			continue
		}
		k := dedupKey{pl.MailboxName, pl.DeliveryKey}
		if id, ok := newByKey[k]; ok {
			res[i] = InsertResult{ID: id, Duplicate: taken[k]}
			taken[k] = true
			continue
		}
		res[i] = InsertResult{ID: pending[k], Duplicate: true}
		if res[i].ID == 0 {
			missing = append(missing, i)
		}
	}
	return res, missing, nil
}
