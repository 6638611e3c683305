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

// pgInsertPayload inserts one payload, or, when a pending row of the
// mailbox holds its delivery key, returns that row's id with duplicate =
// true. A batch queues one per payload, in order, in one pgx.Batch: one
// round trip and one implicit transaction, in which each statement sees
// the rows the earlier ones inserted (so a key repeated inside a batch is
// a duplicate too). Measured against one multi-row INSERT from unnest'ed
// arrays and against COPY into a temporary table, this was the fastest at
// the batch sizes group commit mostly produces; from pgCopyThreshold rows
// COPY wins and insertCopy takes over (BenchmarkInsertPayloadsPostgres).
const pgInsertPayload = `
WITH ins AS (
	INSERT INTO silo_webhook_payload (mailbox_name, provider, destination_type, region_name, integration_id,
		callback_url, request_method, request_path, request_headers, request_body, delivery_key)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
	ON CONFLICT (mailbox_name, delivery_key) WHERE delivery_key IS NOT NULL DO NOTHING
	RETURNING id)
SELECT id, false FROM ins
UNION ALL
SELECT id, true FROM silo_webhook_payload
WHERE $11::text IS NOT NULL AND mailbox_name = $1 AND delivery_key = $11 AND NOT EXISTS (SELECT 1 FROM ins)`

// pgNotifyMailboxes wakes the drainers of every instance; NOTIFY is
// delivered when the transaction commits, and never if it rolls back.
const pgNotifyMailboxes = `SELECT pg_notify('` + notifyChannel + `', m) FROM unnest($1::text[]) AS m`

// InsertPayloads implements Store. The inserts and the NOTIFY go as one
// pgx.Batch: one round trip, one implicit transaction.
func (p *Postgres) InsertPayloads(ctx context.Context, payloads []NewPayload) ([]InsertResult, error) {
	if len(payloads) == 0 {
		return nil, nil
	}
	if err := validateAll(payloads); err != nil {
		return nil, err
	}
	headers := make([]string, len(payloads))
	var mailboxes []string
	for i := range payloads {
		h, err := encodeHeaders(payloads[i].Headers)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidPayload, err)
		}
		headers[i] = h
		if !slices.Contains(mailboxes, payloads[i].MailboxName) {
			mailboxes = append(mailboxes, payloads[i].MailboxName)
		}
	}
	if len(payloads) >= pgCopyThreshold {
		return p.insertCopy(ctx, payloads, headers, mailboxes)
	}
	res := make([]InsertResult, len(payloads))
	var missing []int
	batch := &pgx.Batch{}
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
		batch.Queue(pgInsertPayload, pl.MailboxName, nullString(pl.Provider), destinationOf(pl), pl.Region,
			integration, nullString(pl.CallbackURL), pl.Method, pl.Path, headers[i], body, nullString(pl.DeliveryKey),
		).Query(func(rows pgx.Rows) error {
			found := false
			for rows.Next() {
				if err := rows.Scan(&res[i].ID, &res[i].Duplicate); err != nil {
					return err
				}
				found = true
			}
			if !found {
				// The pending row was committed after this statement's
				// snapshot (ON CONFLICT waited for it).
				res[i].Duplicate = true
				missing = append(missing, i)
			}
			return rows.Err()
		})
	}
	batch.Queue(pgNotifyMailboxes, mailboxes)
	if err := p.pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, pgErr("postgres insert payloads", err)
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

// nullString maps "" to NULL.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
