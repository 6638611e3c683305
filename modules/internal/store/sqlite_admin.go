package store

import (
	"context"
	"database/sql"
	"time"
)

// Mailboxes does what Postgres.Mailboxes does.
func (s *SQLite) Mailboxes(ctx context.Context, now time.Time) ([]MailboxStats, error) {
	rows, err := s.reader.QueryContext(ctx, `
		SELECT c.mailbox_name, coalesce(h.region_name, ''), coalesce(h.provider, ''), c.depth,
			h.date_added, h.attempts, h.schedule_for
		FROM (SELECT mailbox_name, count(*) AS depth, min(id) AS head_id
		      FROM silo_webhook_payload GROUP BY mailbox_name) c
		JOIN silo_webhook_payload h ON h.id = c.head_id
		ORDER BY c.mailbox_name`)
	if err != nil {
		return nil, sqliteErr("sqlite mailboxes", err)
	}
	defer rows.Close()
	var out []MailboxStats
	for rows.Next() {
		var m MailboxStats
		var added, next int64
		if err := rows.Scan(&m.Name, &m.Region, &m.Provider, &m.Depth, &added, &m.HeadAttempts, &next); err != nil {
			return nil, sqliteErr("sqlite mailboxes", err)
		}
		fillMailboxTimes(&m, now, fromMicros(added), fromMicros(next))
		out = append(out, m)
	}
	return out, sqliteErr("sqlite mailboxes", rows.Err())
}

// sqliteDeadLetterColumns are pgDeadLetterColumns for SQLite.
const sqliteDeadLetterColumns = sqlitePayloadColumns + `, reason, dead_at, ` + sqliteAnswerColumns

// DeadLetters does what Postgres.DeadLetters does.
func (s *SQLite) DeadLetters(ctx context.Context, limit int, after int64) ([]DeadLetter, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.reader.QueryContext(ctx, `SELECT `+sqliteDeadLetterColumns+` FROM silo_dead_letter
		WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
	if err != nil {
		return nil, sqliteErr("sqlite dead letters", err)
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		var d DeadLetter
		var dead int64
		var a answer
		d.Payload, err = scanSQLitePayload(rows, &d.Reason, &dead, &a.answered, &a.body)
		if err != nil {
			return nil, sqliteErr("sqlite dead letters", err)
		}
		d.DeadAt = fromMicros(dead)
		a.fill(&d.Payload)
		out = append(out, d)
	}
	return out, sqliteErr("sqlite dead letters", rows.Err())
}

// ReplayDeadLetter does what Postgres.ReplayDeadLetter does; see pgReplayDeadLetter.
func (s *SQLite) ReplayDeadLetter(ctx context.Context, id int64, now time.Time) (int64, error) {
	var newID int64
	err := s.write(ctx, "sqlite replay dead letter", func(tx *sql.Tx) error {
		var err error
		newID, _, err = replayDeadLetterTx(ctx, tx, id, now)
		return err
	})
	return newID, err
}

// RetryMailbox does what Postgres.RetryMailbox does.
func (s *SQLite) RetryMailbox(ctx context.Context, mailbox string, now time.Time) error {
	return s.write(ctx, "sqlite retry mailbox", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE silo_webhook_payload SET schedule_for = ?2
			WHERE mailbox_name = ?1 AND schedule_for > ?2`, mailbox, micros(now)); err != nil {
			return err
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM silo_webhook_payload WHERE mailbox_name = ? LIMIT 1`, mailbox).Scan(&one)
		if isNoRows(err) {
			return ErrNotFound
		}
		return err
	})
}

// PurgeDeadLetters does what Postgres.PurgeDeadLetters does.
func (s *SQLite) PurgeDeadLetters(ctx context.Context, before time.Time, batch int) (int, error) {
	if batch <= 0 {
		return 0, nil
	}
	n, err := s.exec(ctx, "sqlite purge dead letters", `DELETE FROM silo_dead_letter WHERE id IN (
		SELECT id FROM silo_dead_letter WHERE dead_at < ? ORDER BY dead_at LIMIT ?)`, micros(before), batch)
	return int(n), err
}
