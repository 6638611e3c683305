package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// pgCopyThreshold is the batch size from which InsertPayloads goes through
// COPY: its extra round trips (BEGIN, the staging table, COPY, INSERT,
// COMMIT) pay off only for large batches
// (BenchmarkInsertPayloadsPostgresInterleaved).
const pgCopyThreshold = 256

// pgCopyColumns are the columns COPY fills in silo_payload_stage_v2, in
// insertion order (ord) with each row's rank, which picks its id (see
// insertPlan).
var pgCopyColumns = []string{"ord", "rank", "mailbox_name", "provider", "destination_type", "region_name", "integration_id",
	"callback_url", "request_method", "request_path", "request_headers", "request_body", "delivery_key"}

// pgCopyInsert moves the staged batch into the payload table in insertion
// order, skipping duplicates of pending rows. $1 is the number of rows.
var pgCopyInsert = `
INSERT INTO silo_webhook_payload (id, mailbox_name, provider, destination_type, region_name, integration_id,
	callback_url, request_method, request_path, request_headers, request_body, delivery_key)
SELECT (` + fmt.Sprintf(pgBatchIDs, "generate_series(1, $1::int4)") + `)[rank], mailbox_name, provider, destination_type, region_name,
	integration_id, callback_url, request_method, request_path, request_headers, request_body, delivery_key
FROM silo_payload_stage_v2 ORDER BY ord
ON CONFLICT (mailbox_name, delivery_key) WHERE delivery_key IS NOT NULL DO NOTHING
RETURNING id, mailbox_name, coalesce(delivery_key, '')`

// insertCopy is InsertPayloads for large batches: in one transaction, COPY
// into a session-local staging table, INSERT ... SELECT from it, and read
// the ids of the pending rows that keyed payloads duplicate, if any.
func (p *Postgres) insertCopy(ctx context.Context, payloads []NewPayload, headers []string, plan insertPlan) ([]InsertResult, error) {
	rows := make([][]any, len(plan.order))
	for k, i := range plan.order {
		pl := &payloads[i]
		body := pl.Body
		if body == nil {
			body = []byte{}
		}
		var integration *int64
		if pl.IntegrationID != 0 {
			integration = &pl.IntegrationID
		}
		rows[k] = []any{int32(k), plan.rank[k], pl.MailboxName, nullString(pl.Provider), destinationOf(pl), pl.Region, integration,
			nullString(pl.CallbackURL), pl.Method, pl.Path, headers[i], body, nullString(pl.DeliveryKey)}
	}
	var res []InsertResult
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		// ON COMMIT DELETE ROWS empties it for the connection's next batch;
		// the table lives as long as the pooled connection, so its name
		// carries a version: a later release with other columns must not
		// meet this shape on a long-lived session.
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS silo_payload_stage_v2 (
			ord integer, rank integer, mailbox_name text, provider text, destination_type text, region_name text,
			integration_id bigint, callback_url text, request_method text, request_path text,
			request_headers text, request_body bytea, delivery_key text) ON COMMIT DELETE ROWS`); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"silo_payload_stage_v2"}, pgCopyColumns, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		r, err := tx.Query(ctx, pgCopyInsert, int32(len(rows)))
		if err != nil {
			return err
		}
		inserted, err := collectInserted(r)
		if err != nil {
			return err
		}
		if len(inserted) < len(rows) {
			pending, err := pendingKeys(ctx, tx, payloads)
			if err != nil {
				return err
			}
			inserted = append(inserted, pending...)
		}
		// A duplicate whose pending row was delivered meanwhile keeps ID 0.
		res, err = matchInserted(payloads, inserted)
		return err
	})
	if err != nil {
		return nil, pgErr("postgres insert payloads", err)
	}
	return res, nil
}
