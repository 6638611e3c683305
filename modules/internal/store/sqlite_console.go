package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The console's methods for SQLite; each does what the Postgres method of
// the same name does (postgres_console.go). One process writes the file,
// so a bulk batch is one IMMEDIATE transaction of per-row statements (no
// round trips to save), and no other instance needs waking.

// sqliteMailboxHeads is pgMailboxHeads for SQLite, which has no LATERAL:
// the loose index scan steps through the names with min(name > prev), one
// index probe each, then reads each head by its id.
const sqliteMailboxHeads = `
WITH RECURSIVE names(name, n) AS (
	SELECT (SELECT min(mailbox_name) FROM silo_webhook_payload WHERE mailbox_name > ?1), 1
	UNION ALL
	SELECT (SELECT min(mailbox_name) FROM silo_webhook_payload WHERE mailbox_name > names.name), names.n + 1
	FROM names WHERE names.name IS NOT NULL AND names.n < ?2
),
heads(name, head_id) AS (
	SELECT n.name, (SELECT p.id FROM silo_webhook_payload p WHERE p.mailbox_name = n.name ORDER BY p.id LIMIT 1)
	FROM names n WHERE n.name IS NOT NULL
)
SELECT h.name, p.id, coalesce(p.region_name, ''), coalesce(p.provider, ''), p.date_added, p.schedule_for,
	p.attempts, p.last_status, p.last_error
FROM heads h JOIN silo_webhook_payload p ON p.id = h.head_id
ORDER BY h.name`

// MailboxHeads does what Postgres.MailboxHeads does.
func (s *SQLite) MailboxHeads(ctx context.Context, after string, limit int) ([]MailboxHead, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.reader.QueryContext(ctx, sqliteMailboxHeads, after, limit)
	if err != nil {
		return nil, sqliteErr("sqlite mailbox heads", err)
	}
	defer rows.Close()
	var out []MailboxHead
	for rows.Next() {
		var h MailboxHead
		var added, schedule int64
		if err := rows.Scan(&h.Name, &h.HeadID, &h.Region, &h.Provider, &added, &schedule,
			&h.Attempts, &h.LastStatus, &h.LastError); err != nil {
			return nil, sqliteErr("sqlite mailbox heads", err)
		}
		h.DateAdded, h.ScheduleFor = fromMicros(added), fromMicros(schedule)
		out = append(out, h)
	}
	return out, sqliteErr("sqlite mailbox heads", rows.Err())
}

// MailboxDepths does what Postgres.MailboxDepths does.
func (s *SQLite) MailboxDepths(ctx context.Context, names []string, limit int) ([]int64, error) {
	out := make([]int64, len(names))
	conn, err := s.reader.Conn(ctx)
	if err != nil {
		return nil, sqliteErr("sqlite mailbox depths", err)
	}
	defer conn.Close()
	for i, name := range names {
		err := conn.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM silo_webhook_payload
			WHERE mailbox_name = ? LIMIT ?)`, name, limit).Scan(&out[i])
		if err != nil {
			return nil, sqliteErr("sqlite mailbox depths", err)
		}
	}
	return out, nil
}

// sqliteSummaryColumns are summaryColumns for SQLite.
var sqliteSummaryColumns = summaryColumns("length")

// scanSQLiteSummary reads sqliteSummaryColumns and the extra columns
// after them.
func scanSQLiteSummary(r rowScanner, s *RowSummary, extra ...any) error {
	var added int64
	err := r.Scan(append(summaryDest(s, &added), extra...)...)
	s.DateAdded = fromMicros(added)
	return err
}

// query runs a listing on the readers and scans each row with scan.
func (s *SQLite) query(ctx context.Context, op, q string, args []any, scan func(rows *sql.Rows) error) error {
	rows, err := s.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return sqliteErr(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return sqliteErr(op, err)
		}
	}
	return sqliteErr(op, rows.Err())
}

// ListPayloads does what Postgres.ListPayloads does.
func (s *SQLite) ListPayloads(ctx context.Context, f RowFilter, after int64, limit int) ([]RowSummary, error) {
	a := sqliteArgs()
	q := `SELECT ` + sqliteSummaryColumns + `, schedule_for FROM silo_webhook_payload
		WHERE ` + f.where(a, "date_added", "id > "+a.add(after)) + ` ORDER BY id LIMIT ` + a.add(limit)
	var out []RowSummary
	err := s.query(ctx, "sqlite list payloads", q, a.vals, func(rows *sql.Rows) error {
		var r RowSummary
		var schedule int64
		err := scanSQLiteSummary(rows, &r, &schedule)
		r.ScheduleFor = fromMicros(schedule)
		out = append(out, r)
		return err
	})
	return out, err
}

// Payload does what Postgres.Payload does.
func (s *SQLite) Payload(ctx context.Context, id int64) (Payload, error) {
	var a answer
	p, err := scanSQLitePayload(s.reader.QueryRowContext(ctx, `SELECT `+sqlitePayloadColumns+`, `+sqliteAnswerColumns+`
		FROM silo_webhook_payload WHERE id = ?`, id), &a.answered, &a.body)
	if isNoRows(err) {
		return Payload{}, ErrNotFound
	}
	a.fill(&p)
	return p, sqliteErr("sqlite payload", err)
}

// ListDeadLetters does what Postgres.ListDeadLetters does.
func (s *SQLite) ListDeadLetters(ctx context.Context, f RowFilter, after int64, limit int) ([]DeadLetterSummary, error) {
	a := sqliteArgs()
	q := `SELECT ` + sqliteSummaryColumns + `, reason, dead_at FROM silo_dead_letter
		WHERE ` + f.where(a, "dead_at", "id > "+a.add(after)) + ` ORDER BY id LIMIT ` + a.add(limit)
	var out []DeadLetterSummary
	err := s.query(ctx, "sqlite list dead letters", q, a.vals, func(rows *sql.Rows) error {
		var d DeadLetterSummary
		var dead int64
		err := scanSQLiteSummary(rows, &d.RowSummary, &d.Reason, &dead)
		d.DeadAt = fromMicros(dead)
		out = append(out, d)
		return err
	})
	return out, err
}

// DeadLetter does what Postgres.DeadLetter does.
func (s *SQLite) DeadLetter(ctx context.Context, id int64) (DeadLetter, error) {
	var d DeadLetter
	var a answer
	var dead int64
	var err error
	d.Payload, err = scanSQLitePayload(s.reader.QueryRowContext(ctx, `SELECT `+sqliteDeadLetterColumns+`
		FROM silo_dead_letter WHERE id = ?`, id), &d.Reason, &dead, &a.answered, &a.body)
	if isNoRows(err) {
		return DeadLetter{}, ErrNotFound
	}
	d.DeadAt = fromMicros(dead)
	a.fill(&d.Payload)
	return d, sqliteErr("sqlite dead letter", err)
}

// DeleteDeadLetter does what Postgres.DeleteDeadLetter does.
func (s *SQLite) DeleteDeadLetter(ctx context.Context, id int64) error {
	return s.execOne(ctx, "sqlite delete dead letter", `DELETE FROM silo_dead_letter WHERE id = ?`, id)
}

// MaxDeadLetterID does what Postgres.MaxDeadLetterID does.
func (s *SQLite) MaxDeadLetterID(ctx context.Context) (int64, error) {
	var id int64
	err := s.reader.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM silo_dead_letter`).Scan(&id)
	return id, sqliteErr("sqlite max dead letter id", err)
}

// sqliteReplayInsert puts a copy of the row ?1 of a table (dead letters or
// history, %s) at the tail of its mailbox, due at ?2; see
// pgReplayDeadLetter for the delivery key. "WHERE true" keeps SQLite from
// reading ON CONFLICT as a join.
const sqliteReplayInsert = `
INSERT INTO silo_webhook_payload (mailbox_name, provider, destination_type, region_name, integration_id,
	date_added, schedule_for, attempts, request_method, request_path, request_headers, request_body,
	delivery_key, callback_url, region_answer)
SELECT d.mailbox_name, d.provider, d.destination_type, d.region_name, d.integration_id,
	?2, ?2, 0, d.request_method, d.request_path, d.request_headers, d.request_body,
	CASE WHEN EXISTS (SELECT 1 FROM silo_webhook_payload p
	                  WHERE p.mailbox_name = d.mailbox_name AND p.delivery_key = d.delivery_key)
	     THEN NULL ELSE d.delivery_key END,
	d.callback_url, d.region_answer
FROM %s d WHERE d.id = ?1
RETURNING id, mailbox_name`

var (
	sqliteReplayDeadLetterInsert = fmt.Sprintf(sqliteReplayInsert, "silo_dead_letter")
	sqliteReplayDeliveredInsert  = fmt.Sprintf(sqliteReplayInsert, "silo_delivered")
)

// replayDeadLetterTx moves one dead letter back to its mailbox inside tx
// and returns the new id and the mailbox (ErrNotFound when it is gone).
func replayDeadLetterTx(ctx context.Context, tx *sql.Tx, id int64, now time.Time) (int64, string, error) {
	var newID int64
	var mailbox string
	err := tx.QueryRowContext(ctx, sqliteReplayDeadLetterInsert, id, micros(now)).Scan(&newID, &mailbox)
	if isNoRows(err) {
		return 0, "", ErrNotFound
	}
	if err != nil {
		return 0, "", err
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM silo_dead_letter WHERE id = ?`, id)
	return newID, mailbox, err
}

// pickIDs reads a batch's ids inside tx.
func pickIDs(ctx context.Context, tx *sql.Tx, q string, args []any) ([]int64, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// ReplayDeadLetters does what Postgres.ReplayDeadLetters does: the rows
// are replayed one by one in id order, in one transaction.
func (s *SQLite) ReplayDeadLetters(ctx context.Context, f RowFilter, upto int64, batch int, now time.Time) (Replayed, error) {
	a := sqliteArgs()
	q := `SELECT id FROM silo_dead_letter WHERE ` + f.where(a, "dead_at", "id <= "+a.add(upto)) +
		` ORDER BY id LIMIT ` + a.add(batch)
	var boxes []string
	err := s.write(ctx, "sqlite replay dead letters", func(tx *sql.Tx) error {
		ids, err := pickIDs(ctx, tx, q, a.vals)
		if err != nil {
			return err
		}
		for _, id := range ids {
			_, box, err := replayDeadLetterTx(ctx, tx, id, now)
			if err != nil {
				return err
			}
			boxes = append(boxes, box)
		}
		return nil
	})
	if err != nil {
		return Replayed{}, err
	}
	return Replayed{Count: len(boxes), Mailboxes: distinct(boxes)}, nil
}

// DeleteDeadLetters does what Postgres.DeleteDeadLetters does.
func (s *SQLite) DeleteDeadLetters(ctx context.Context, f RowFilter, upto int64, batch int) (int, error) {
	a := sqliteArgs()
	q := `DELETE FROM silo_dead_letter WHERE id IN (SELECT id FROM silo_dead_letter
		WHERE ` + f.where(a, "dead_at", "id <= "+a.add(upto)) + ` ORDER BY id LIMIT ` + a.add(batch) + `)`
	n, err := s.exec(ctx, "sqlite delete dead letters", q, a.vals...)
	return int(n), err
}

// DeliverPayload does what Postgres.DeliverPayload does: copy, then
// delete, in one transaction.
func (s *SQLite) DeliverPayload(ctx context.Context, id int64, d Delivery) error {
	return s.write(ctx, "sqlite deliver payload", func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `
			INSERT INTO silo_delivered (id, mailbox_name, provider, destination_type, region_name, integration_id,
				date_added, attempts, request_method, request_path, request_headers, request_body, delivery_key,
				callback_url, region_answer, last_status, last_error, status, duration_us, delivered_at)
			SELECT id, mailbox_name, provider, destination_type, region_name, integration_id,
				date_added, attempts + 1, request_method, request_path, request_headers, request_body, delivery_key,
				callback_url, region_answer, last_status, last_error, ?, ?, ?
			FROM silo_webhook_payload WHERE id = ?`, d.Status, d.Duration.Microseconds(), micros(d.At), id)
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

// PurgeDelivered does what Postgres.PurgeDelivered does.
func (s *SQLite) PurgeDelivered(ctx context.Context, before time.Time, batch int) (int, error) {
	if batch <= 0 {
		return 0, nil
	}
	n, err := s.exec(ctx, "sqlite purge delivered", `DELETE FROM silo_delivered WHERE id IN (
		SELECT id FROM silo_delivered WHERE delivered_at < ? ORDER BY delivered_at LIMIT ?)`, micros(before), batch)
	return int(n), err
}

// sqliteDeliveredInfoColumns is pgDeliveredInfoColumns for SQLite.
const sqliteDeliveredInfoColumns = `status, duration_us, delivered_at, replayed_at, coalesce(replayed_as, 0)`

// sqliteDeliveredScan receives sqliteDeliveredInfoColumns.
type sqliteDeliveredScan struct {
	micros, at int64
	replayed   sql.NullInt64
}

func (s *sqliteDeliveredScan) dest(d *DeliveredInfo) []any {
	return []any{&d.Status, &s.micros, &s.at, &s.replayed, &d.ReplayedAs}
}

func (s *sqliteDeliveredScan) fill(d *DeliveredInfo) {
	d.Duration = time.Duration(s.micros) * time.Microsecond
	d.At = fromMicros(s.at)
	if s.replayed.Valid {
		d.ReplayedAt = fromMicros(s.replayed.Int64)
	}
}

// ListDelivered does what Postgres.ListDelivered does.
func (s *SQLite) ListDelivered(ctx context.Context, f RowFilter, after DeliveredCursor, limit int) ([]DeliveredSummary, error) {
	a := sqliteArgs()
	cursor := "(delivered_at, id) > (" + a.add(after.At) + ", " + a.add(after.ID) + ")"
	q := `SELECT ` + sqliteSummaryColumns + `, ` + sqliteDeliveredInfoColumns + ` FROM silo_delivered
		WHERE ` + f.where(a, "delivered_at", cursor) + ` ORDER BY delivered_at, id LIMIT ` + a.add(limit)
	var out []DeliveredSummary
	err := s.query(ctx, "sqlite list delivered", q, a.vals, func(rows *sql.Rows) error {
		var d DeliveredSummary
		var sc sqliteDeliveredScan
		err := scanSQLiteSummary(rows, &d.RowSummary, sc.dest(&d.DeliveredInfo)...)
		sc.fill(&d.DeliveredInfo)
		out = append(out, d)
		return err
	})
	return out, err
}

// Delivered does what Postgres.Delivered does.
func (s *SQLite) Delivered(ctx context.Context, id int64) (DeliveredPayload, error) {
	var d DeliveredPayload
	var a answer
	var sc sqliteDeliveredScan
	var err error
	d.Payload, err = scanSQLitePayload(s.reader.QueryRowContext(ctx, `SELECT id, mailbox_name, coalesce(provider, ''),
		destination_type, coalesce(region_name, ''), coalesce(integration_id, 0), coalesce(callback_url, ''),
		request_method, request_path, request_headers, request_body, coalesce(delivery_key, ''), date_added, date_added,
		attempts, last_status, last_error, `+sqliteAnswerColumns+`, `+sqliteDeliveredInfoColumns+`
		FROM silo_delivered WHERE id = ?`, id), append([]any{&a.answered, &a.body}, sc.dest(&d.DeliveredInfo)...)...)
	if isNoRows(err) {
		return DeliveredPayload{}, ErrNotFound
	}
	a.fill(&d.Payload)
	sc.fill(&d.DeliveredInfo)
	return d, sqliteErr("sqlite delivered", err)
}

// replayDeliveredTx copies one delivered row back to its mailbox inside
// tx, unless it was replayed already and again is not set, and marks it.
func replayDeliveredTx(ctx context.Context, tx *sql.Tx, id int64, again bool, now time.Time) (int64, string, error) {
	var replayed sql.NullInt64
	err := tx.QueryRowContext(ctx, `SELECT replayed_at FROM silo_delivered WHERE id = ?`, id).Scan(&replayed)
	if isNoRows(err) {
		return 0, "", ErrNotFound
	}
	if err != nil {
		return 0, "", err
	}
	if replayed.Valid && !again {
		return 0, "", ErrAlreadyReplayed
	}
	var newID int64
	var mailbox string
	if err := tx.QueryRowContext(ctx, sqliteReplayDeliveredInsert, id, micros(now)).Scan(&newID, &mailbox); err != nil {
		return 0, "", err
	}
	_, err = tx.ExecContext(ctx, `UPDATE silo_delivered SET replayed_at = ?, replayed_as = ? WHERE id = ?`, micros(now), newID, id)
	return newID, mailbox, err
}

// ReplayDelivered does what Postgres.ReplayDelivered does.
func (s *SQLite) ReplayDelivered(ctx context.Context, id int64, again bool, now time.Time) (int64, error) {
	var newID int64
	err := s.write(ctx, "sqlite replay delivered", func(tx *sql.Tx) error {
		var err error
		newID, _, err = replayDeliveredTx(ctx, tx, id, again, now)
		return err
	})
	return newID, err
}

// ReplayDeliveredRows does what Postgres.ReplayDeliveredRows does: the
// rows are copied one by one in delivery order, in one transaction.
func (s *SQLite) ReplayDeliveredRows(ctx context.Context, f RowFilter, before time.Time, batch int, now time.Time) (Replayed, error) {
	a := sqliteArgs()
	q := `SELECT id FROM silo_delivered WHERE ` + f.where(a, "delivered_at", "replayed_at IS NULL", "delivered_at < "+a.add(before)) +
		` ORDER BY delivered_at, id LIMIT ` + a.add(batch)
	var boxes []string
	err := s.write(ctx, "sqlite replay delivered rows", func(tx *sql.Tx) error {
		ids, err := pickIDs(ctx, tx, q, a.vals)
		if err != nil {
			return err
		}
		for _, id := range ids {
			_, box, err := replayDeliveredTx(ctx, tx, id, false, now)
			if err != nil {
				return err
			}
			boxes = append(boxes, box)
		}
		return nil
	})
	if err != nil {
		return Replayed{}, err
	}
	return Replayed{Count: len(boxes), Mailboxes: distinct(boxes)}, nil
}

// DeleteDelivered does what Postgres.DeleteDelivered does.
func (s *SQLite) DeleteDelivered(ctx context.Context, id int64) error {
	return s.execOne(ctx, "sqlite delete delivered", `DELETE FROM silo_delivered WHERE id = ?`, id)
}

// DeleteDeliveredRows does what Postgres.DeleteDeliveredRows does.
func (s *SQLite) DeleteDeliveredRows(ctx context.Context, f RowFilter, before time.Time, batch int) (int, error) {
	a := sqliteArgs()
	q := `DELETE FROM silo_delivered WHERE id IN (SELECT id FROM silo_delivered
		WHERE ` + f.where(a, "delivered_at", "delivered_at < "+a.add(before)) + `
		ORDER BY delivered_at, id LIMIT ` + a.add(batch) + `)`
	n, err := s.exec(ctx, "sqlite delete delivered rows", q, a.vals...)
	return int(n), err
}

// Pause does what Postgres.Pause does.
func (s *SQLite) Pause(ctx context.Context, pause Pause) (Pause, bool, error) {
	if err := checkPauseKind(pause.Kind); err != nil {
		return Pause{}, false, err
	}
	var out Pause
	var created bool
	err := s.write(ctx, "sqlite pause", func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `INSERT INTO silo_pause (kind, name, paused_at, paused_by, reason) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (kind, name) DO NOTHING`, pause.Kind, pause.Name, micros(pause.PausedAt), pause.PausedBy, pause.Reason)
		if err != nil {
			return err
		}
		n, _ := r.RowsAffected()
		created = n == 1
		var at int64
		err = tx.QueryRowContext(ctx, `SELECT kind, name, paused_at, paused_by, reason FROM silo_pause WHERE kind = ? AND name = ?`,
			pause.Kind, pause.Name).Scan(&out.Kind, &out.Name, &at, &out.PausedBy, &out.Reason)
		out.PausedAt = fromMicros(at)
		return err
	})
	return out, created, err
}

// Resume does what Postgres.Resume does.
func (s *SQLite) Resume(ctx context.Context, kind, name string) (bool, error) {
	if err := checkPauseKind(kind); err != nil {
		return false, err
	}
	n, err := s.exec(ctx, "sqlite resume", `DELETE FROM silo_pause WHERE kind = ? AND name = ?`, kind, name)
	return n == 1, err
}

// Pauses does what Postgres.Pauses does.
func (s *SQLite) Pauses(ctx context.Context) ([]Pause, error) {
	var out []Pause
	err := s.query(ctx, "sqlite pauses", `SELECT kind, name, paused_at, paused_by, reason FROM silo_pause
		ORDER BY kind <> 'region', name`, nil, func(rows *sql.Rows) error {
		var p Pause
		var at int64
		err := rows.Scan(&p.Kind, &p.Name, &at, &p.PausedBy, &p.Reason)
		p.PausedAt = fromMicros(at)
		out = append(out, p)
		return err
	})
	return out, err
}
