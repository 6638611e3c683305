package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// sqlitePayloadColumns are the columns scanSQLitePayload reads, in order.
const sqlitePayloadColumns = `id, mailbox_name, coalesce(provider, ''), destination_type, coalesce(region_name, ''),
	coalesce(integration_id, 0), coalesce(callback_url, ''), request_method, request_path, request_headers,
	request_body, coalesce(delivery_key, ''), date_added, schedule_for, attempts, last_status, last_error`

// rowScanner is a *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

// scanSQLitePayload reads one row selected with sqlitePayloadColumns.
func scanSQLitePayload(row rowScanner, extra ...any) (Payload, error) {
	var p Payload
	var headers string
	var added, schedule int64
	dest := []any{&p.ID, &p.MailboxName, &p.Provider, &p.DestinationType, &p.Region,
		&p.IntegrationID, &p.CallbackURL, &p.Method, &p.Path, &headers,
		&p.Body, &p.DeliveryKey, &added, &schedule, &p.Attempts, &p.LastStatus, &p.LastError}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return p, err
	}
	h, err := decodeHeaders(headers)
	if err != nil {
		return p, fmt.Errorf("payload %d: %w", p.ID, err)
	}
	p.Headers = h
	p.DateAdded, p.ScheduleFor = fromMicros(added), fromMicros(schedule)
	if p.Body == nil {
		p.Body = []byte{}
	}
	return p, nil
}

const sqliteInsertPayload = `
INSERT INTO silo_webhook_payload (mailbox_name, provider, destination_type, region_name, integration_id,
	callback_url, request_method, request_path, request_headers, request_body, delivery_key, date_added)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (mailbox_name, delivery_key) WHERE delivery_key IS NOT NULL DO NOTHING
RETURNING id`

// InsertPayloads does what Postgres.InsertPayloads does: one IMMEDIATE transaction, one
// prepared INSERT per row (in-process SQLite has no round trips to save),
// one fsync at commit.
func (s *SQLite) InsertPayloads(ctx context.Context, payloads []NewPayload) ([]InsertResult, error) {
	if len(payloads) == 0 {
		return nil, nil
	}
	headers, err := prepareInsert(payloads)
	if err != nil {
		return nil, err
	}
	now := micros(time.Now())
	res := make([]InsertResult, len(payloads))
	err = s.write(ctx, "sqlite insert payloads", func(tx *sql.Tx) error {
		ins, err := tx.PrepareContext(ctx, sqliteInsertPayload)
		if err != nil {
			return err
		}
		defer ins.Close()
		for i := range payloads {
			pl := &payloads[i]
			body := pl.Body
			if body == nil {
				body = []byte{}
			}
			err := ins.QueryRowContext(ctx, pl.MailboxName, nullable(pl.Provider), destinationOf(pl), pl.Region,
				nullableID(pl.IntegrationID), nullable(pl.CallbackURL), pl.Method, pl.Path, headers[i], body,
				nullable(pl.DeliveryKey), now).Scan(&res[i].ID)
			if err == nil {
				continue
			}
			if !isNoRows(err) {
				return err
			}
			// A pending row, stored before or earlier in this batch, holds
			// the key: this transaction sees both.
			res[i].Duplicate = true
			err = tx.QueryRowContext(ctx, `SELECT id FROM silo_webhook_payload WHERE mailbox_name = ? AND delivery_key = ?`,
				pl.MailboxName, pl.DeliveryKey).Scan(&res[i].ID)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// nullable maps "" to NULL.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nullableID maps 0 to NULL.
func nullableID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}
