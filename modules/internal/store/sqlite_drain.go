package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"
)

// sqliteDueHeads is pgDueHeads for SQLite, which has no LATERAL: the
// loose index scan steps through mailbox names with min(name > prev) (one
// index probe each), then reads each head by its id.
const sqliteDueHeads = `
WITH RECURSIVE names(name, n) AS (
	SELECT min(mailbox_name), 1 FROM silo_webhook_payload
	UNION ALL
	SELECT (SELECT min(mailbox_name) FROM silo_webhook_payload WHERE mailbox_name > names.name), names.n + 1
	FROM names WHERE names.name IS NOT NULL AND names.n < ?4
),
heads(name, head_id) AS (
	SELECT n.name, (SELECT p.id FROM silo_webhook_payload p WHERE p.mailbox_name = n.name ORDER BY p.id LIMIT 1)
	FROM names n WHERE n.name IS NOT NULL
),
due(name, due_id) AS (
	SELECT h.name, CASE
		WHEN p.schedule_for <= ?1 THEN p.id
		WHEN coalesce(p.provider, '') IN (SELECT value FROM json_each(?3)) THEN (
			SELECT q.id FROM silo_webhook_payload q
			WHERE q.mailbox_name = h.name AND q.schedule_for <= ?1 ORDER BY q.id LIMIT 1)
	END
	FROM heads h JOIN silo_webhook_payload p ON p.id = h.head_id
)
SELECT * FROM (
	SELECT d.name, d.due_id FROM due d
	WHERE d.due_id IS NOT NULL
	  AND NOT EXISTS (SELECT 1 FROM silo_mailbox_lease l WHERE l.mailbox_name = d.name AND l.lease_until > ?1)
	ORDER BY d.due_id
	LIMIT ?2)
UNION ALL
SELECT NULL, count(*) FROM heads`

// sqliteDueWindow is pgDueWindow for SQLite.
const sqliteDueWindow = `
SELECT w.mailbox_name FROM (
	SELECT id, mailbox_name, schedule_for, provider FROM silo_webhook_payload ORDER BY id LIMIT ?4
) w
WHERE w.schedule_for <= ?1
  AND ((SELECT min(e.id) FROM silo_webhook_payload e WHERE e.mailbox_name = w.mailbox_name AND e.id < w.id) IS NULL
       OR (coalesce(w.provider, '') IN (SELECT value FROM json_each(?3))
           AND (SELECT min(e.id) FROM silo_webhook_payload e
                WHERE e.mailbox_name = w.mailbox_name AND e.id < w.id AND e.schedule_for <= ?1) IS NULL))
  AND NOT EXISTS (SELECT 1 FROM silo_mailbox_lease l WHERE l.mailbox_name = w.mailbox_name AND l.lease_until > ?1)
ORDER BY w.id
LIMIT ?2`

// DueMailboxes does what Postgres.DueMailboxes does.
func (s *SQLite) DueMailboxes(ctx context.Context, now time.Time, limit int, skipOnFailure []string) ([]string, error) {
	if skipOnFailure == nil {
		skipOnFailure = []string{}
	}
	skip, _ := json.Marshal(skipOnFailure)
	names, err := dueMailboxes(limit,
		func(visit int) ([]string, int, error) {
			rows, err := s.reader.QueryContext(ctx, sqliteDueHeads, micros(now), limit, string(skip), visit)
			if err != nil {
				return nil, 0, err
			}
			defer rows.Close()
			var names []string
			visited := 0
			for rows.Next() {
				var name sql.NullString
				var n int64
				if err := rows.Scan(&name, &n); err != nil {
					return nil, 0, err
				}
				if name.Valid {
					names = append(names, name.String)
				} else {
					visited = int(n)
				}
			}
			return names, visited, rows.Err()
		},
		func(window int) ([]string, error) {
			rows, err := s.reader.QueryContext(ctx, sqliteDueWindow, micros(now), limit, string(skip), window)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			var names []string
			for rows.Next() {
				var n string
				if err := rows.Scan(&n); err != nil {
					return nil, err
				}
				names = append(names, n)
			}
			return names, rows.Err()
		})
	return names, sqliteErr("sqlite due mailboxes", err)
}

// ClaimMailbox does what Postgres.ClaimMailbox does, in one statement as in PostgreSQL.
func (s *SQLite) ClaimMailbox(ctx context.Context, mailbox, owner string, now, leaseUntil time.Time) (bool, error) {
	claimed := false
	err := s.write(ctx, "sqlite claim mailbox", func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `
			INSERT INTO silo_mailbox_lease (mailbox_name, owner, lease_until) VALUES (?1, ?2, ?3)
			ON CONFLICT (mailbox_name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
			WHERE silo_mailbox_lease.lease_until <= ?4 OR silo_mailbox_lease.owner = excluded.owner
			RETURNING 1`, mailbox, owner, micros(leaseUntil), micros(now)).Scan(&one)
		if isNoRows(err) {
			return nil
		}
		claimed = err == nil
		return err
	})
	return claimed, err
}

// RenewLease does what Postgres.RenewLease does.
func (s *SQLite) RenewLease(ctx context.Context, mailbox, owner string, leaseUntil time.Time) (bool, error) {
	n, err := s.exec(ctx, "sqlite renew lease", `UPDATE silo_mailbox_lease SET lease_until = ? WHERE mailbox_name = ? AND owner = ?`,
		micros(leaseUntil), mailbox, owner)
	return n == 1, err
}

// ReleaseMailbox does what Postgres.ReleaseMailbox does.
func (s *SQLite) ReleaseMailbox(ctx context.Context, mailbox, owner string) error {
	_, err := s.exec(ctx, "sqlite release mailbox", `DELETE FROM silo_mailbox_lease WHERE mailbox_name = ? AND owner = ?`, mailbox, owner)
	return err
}

// NextPayloads does what Postgres.NextPayloads does.
func (s *SQLite) NextPayloads(ctx context.Context, mailbox string, afterID int64, now time.Time, dueOnly bool, limit int) ([]Payload, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.reader.QueryContext(ctx, `SELECT `+sqlitePayloadColumns+`, `+sqliteAnswerColumns+` FROM silo_webhook_payload
		WHERE mailbox_name = ?1 AND id > ?2 AND (NOT ?3 OR schedule_for <= ?4)
		ORDER BY id LIMIT ?5`, mailbox, afterID, dueOnly, micros(now), limit)
	if err != nil {
		return nil, sqliteErr("sqlite next payloads", err)
	}
	defer rows.Close()
	var out []Payload
	for rows.Next() {
		var a answer
		p, err := scanSQLitePayload(rows, &a.answered, &a.body)
		if err != nil {
			return nil, sqliteErr("sqlite next payloads", err)
		}
		a.fill(&p)
		out = append(out, p)
	}
	return out, sqliteErr("sqlite next payloads", rows.Err())
}

// sqliteAnswerColumns is pgAnswerColumns for SQLite.
const sqliteAnswerColumns = `region_answer IS NOT NULL, coalesce(region_answer, x'')`

// RecordRegionAnswer does what Postgres.RecordRegionAnswer does.
func (s *SQLite) RecordRegionAnswer(ctx context.Context, id int64, mailbox string, answer []byte, lastStatus int, now time.Time) error {
	if answer == nil {
		answer = []byte{}
	}
	return s.execOne(ctx, "sqlite record region answer", `UPDATE silo_webhook_payload
		SET region_answer = ?, mailbox_name = ?, attempts = 0, schedule_for = ?, last_status = ?, last_error = ''
		WHERE id = ?`, answer, mailbox, micros(now), lastStatus, id)
}

// DeletePayload does what Postgres.DeletePayload does.
func (s *SQLite) DeletePayload(ctx context.Context, id int64) error {
	return s.execOne(ctx, "sqlite delete payload", `DELETE FROM silo_webhook_payload WHERE id = ?`, id)
}

// ReschedulePayload does what Postgres.ReschedulePayload does.
func (s *SQLite) ReschedulePayload(ctx context.Context, id int64, attempts int, scheduleFor time.Time, lastStatus int, lastError string) error {
	return s.execOne(ctx, "sqlite reschedule payload", `UPDATE silo_webhook_payload
		SET attempts = ?, schedule_for = ?, last_status = ?, last_error = ? WHERE id = ?`,
		attempts, micros(scheduleFor), lastStatus, lastError, id)
}

// DeadLetterPayload does what Postgres.DeadLetterPayload does: copy, then delete, in one
// transaction.
func (s *SQLite) DeadLetterPayload(ctx context.Context, id int64, reason string, lastStatus int, lastError string, now time.Time) error {
	return s.write(ctx, "sqlite dead-letter payload", func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `
			INSERT INTO silo_dead_letter (id, mailbox_name, provider, destination_type, region_name, integration_id,
				date_added, schedule_for, attempts, request_method, request_path, request_headers, request_body,
				delivery_key, callback_url, region_answer, reason, last_status, last_error, dead_at)
			SELECT id, mailbox_name, provider, destination_type, region_name, integration_id,
				date_added, schedule_for, attempts, request_method, request_path, request_headers, request_body,
				delivery_key, callback_url, region_answer, ?, ?, ?, ?
			FROM silo_webhook_payload WHERE id = ?`, reason, lastStatus, lastError, micros(now), id)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM silo_webhook_payload WHERE id = ?`, id)
		return err
	})
}

// exec runs one statement on the writer and returns the rows affected.
func (s *SQLite) exec(ctx context.Context, op, query string, args ...any) (int64, error) {
	r, err := s.writer.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, sqliteErr(op, err)
	}
	n, err := r.RowsAffected()
	return n, sqliteErr(op, err)
}

// execOne is exec for a statement that must touch a row.
func (s *SQLite) execOne(ctx context.Context, op, query string, args ...any) error {
	n, err := s.exec(ctx, op, query, args...)
	if err == nil && n == 0 {
		return ErrNotFound
	}
	return err
}
