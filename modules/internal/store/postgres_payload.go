package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// pgPayloadColumns are the columns scanPGPayload reads, in order.
const pgPayloadColumns = `id, mailbox_name, coalesce(provider, ''), destination_type, coalesce(region_name, ''),
	coalesce(integration_id, 0), coalesce(callback_url, ''), request_method, request_path, request_headers,
	request_body, coalesce(delivery_key, ''), date_added, schedule_for, attempts, last_status, last_error`

// scanPGPayload reads one row selected with pgPayloadColumns.
func scanPGPayload(row pgx.Row, extra ...any) (Payload, error) {
	var p Payload
	var headers string
	dest := []any{&p.ID, &p.MailboxName, &p.Provider, &p.DestinationType, &p.Region,
		&p.IntegrationID, &p.CallbackURL, &p.Method, &p.Path, &headers,
		&p.Body, &p.DeliveryKey, &p.DateAdded, &p.ScheduleFor, &p.Attempts, &p.LastStatus, &p.LastError}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return p, err
	}
	h, err := decodeHeaders(headers)
	if err != nil {
		return p, fmt.Errorf("payload %d: %w", p.ID, err)
	}
	p.Headers = h
	p.DateAdded = p.DateAdded.UTC()
	p.ScheduleFor = p.ScheduleFor.UTC()
	return p, nil
}

// InsertPayloads implements Store. A batch below pgCopyThreshold rows is
// one multi-row INSERT from arrays plus the NOTIFY, in one pgx.Batch: one
// round trip, one implicit transaction. From pgCopyThreshold rows it goes
// through COPY (insertCopy). BenchmarkInsertPayloadsPostgresInterleaved
// chose both against one INSERT per row in a pgx.Batch: per-row is ~20%
// faster for a single row, the arrays ~20-40% faster from 16 to 128 rows,
// COPY ~40% faster at 512 rows.
func (p *Postgres) InsertPayloads(ctx context.Context, payloads []NewPayload) ([]InsertResult, error) {
	if len(payloads) == 0 {
		return nil, nil
	}
	headers, err := prepareInsert(payloads)
	if err != nil {
		return nil, err
	}
	if len(payloads) >= pgCopyThreshold {
		return p.insertCopy(ctx, payloads, headers)
	}
	return p.insertArrays(ctx, payloads, headers)
}

// pgInsertArrays inserts a whole batch in one statement: the batch goes in
// as one array per column (unnest ... WITH ORDINALITY, inserted in batch
// order so ids follow it), duplicates of pending rows are skipped by the
// partial unique index, and the ids of the pending rows they duplicate are
// read in the same statement.
const pgInsertArrays = `
WITH input AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
		$7::text[], $8::text[], $9::text[], $10::bytea[], $11::text[])
	WITH ORDINALITY AS t(mailbox_name, provider, destination_type, region_name, integration_id, callback_url,
		request_method, request_path, request_headers, request_body, delivery_key, ord)
),
inserted AS (
	INSERT INTO silo_webhook_payload (mailbox_name, provider, destination_type, region_name, integration_id,
		callback_url, request_method, request_path, request_headers, request_body, delivery_key)
	SELECT mailbox_name, provider, destination_type, region_name, integration_id, callback_url,
		request_method, request_path, request_headers, request_body, delivery_key
	FROM input ORDER BY ord
	ON CONFLICT (mailbox_name, delivery_key) WHERE delivery_key IS NOT NULL DO NOTHING
	RETURNING id, mailbox_name, delivery_key
)
SELECT id, mailbox_name, coalesce(delivery_key, ''), true FROM inserted
UNION ALL
-- Only for keys that were not inserted (the rare duplicates): one probe of
-- the unique index each, as a scalar subquery so that it can never become
-- a hash join over the whole backlog. A pending row committed after this
-- statement's snapshot (ON CONFLICT waited for it) comes back NULL.
SELECT (SELECT p.id FROM silo_webhook_payload p
        WHERE p.mailbox_name = k.mailbox_name AND p.delivery_key = k.delivery_key),
	k.mailbox_name, k.delivery_key, false
FROM (SELECT DISTINCT mailbox_name, delivery_key FROM input WHERE delivery_key IS NOT NULL) k
WHERE NOT EXISTS (SELECT 1 FROM inserted i WHERE i.mailbox_name = k.mailbox_name AND i.delivery_key = k.delivery_key)`

// insertArrays is InsertPayloads for small and medium batches.
func (p *Postgres) insertArrays(ctx context.Context, payloads []NewPayload, headers []string) ([]InsertResult, error) {
	n := len(payloads)
	var (
		mailbox, dest, region, method, path = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		provider, callback, key             = make([]*string, n), make([]*string, n), make([]*string, n)
		integration                         = make([]*int64, n)
		body                                = make([][]byte, n)
	)
	for i := range payloads {
		pl := &payloads[i]
		mailbox[i], dest[i], region[i], method[i], path[i] = pl.MailboxName, destinationOf(pl), pl.Region, pl.Method, pl.Path
		provider[i], callback[i], key[i] = nullString(pl.Provider), nullString(pl.CallbackURL), nullString(pl.DeliveryKey)
		if pl.IntegrationID != 0 {
			integration[i] = &pl.IntegrationID
		}
		body[i] = pl.Body
		if body[i] == nil {
			body[i] = []byte{}
		}
	}
	batch := &pgx.Batch{}
	var rows []insertedRow
	batch.Queue(pgInsertArrays, mailbox, provider, dest, region, integration, callback,
		method, path, headers, body, key).Query(func(rs pgx.Rows) error {
		var err error
		rows, err = pgx.CollectRows(rs, func(r pgx.CollectableRow) (insertedRow, error) {
			var ir insertedRow
			var id *int64
			err := r.Scan(&id, &ir.mailbox, &ir.key, &ir.inserted)
			if id != nil {
				ir.id = *id
			}
			return ir, err
		})
		return err
	})
	if err := p.pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, pgErr("postgres insert payloads", err)
	}
	res, missing, err := matchInserted(payloads, rows)
	if err != nil {
		return nil, err
	}
	// Read the ids the snapshot could not see. If such a row was
	// delivered meanwhile, the duplicate keeps ID 0.
	for _, i := range missing {
		err := p.pool.QueryRow(ctx, `SELECT id FROM silo_webhook_payload WHERE mailbox_name = $1 AND delivery_key = $2`,
			payloads[i].MailboxName, payloads[i].DeliveryKey).Scan(&res[i].ID)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, pgErr("postgres insert payloads", err)
		}
	}
	return res, nil
}

// insertedRow is one row of an insert's answer: a new row (inserted) or a
// pending row a keyed payload duplicates (id 0 when not seen).
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
// duplicates whose pending row's id is not known.
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

// nullString maps "" to NULL.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
