package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgMailboxes counts each mailbox on the (mailbox_name, id) index and
// reads only the head row of each.
const pgMailboxes = `
SELECT c.mailbox_name, coalesce(h.region_name, ''), coalesce(h.provider, ''), c.depth,
	h.date_added, h.attempts, h.schedule_for
FROM (SELECT mailbox_name, count(*) AS depth, min(id) AS head_id
      FROM silo_webhook_payload GROUP BY mailbox_name) c
JOIN silo_webhook_payload h ON h.id = c.head_id
ORDER BY c.mailbox_name`

// Mailboxes lists every mailbox with its depth and head, by name.
// NextAttemptAt is the head's schedule_for, or now when the head is
// already due.
func (p *Postgres) Mailboxes(ctx context.Context, now time.Time) ([]MailboxStats, error) {
	rows, err := p.pool.Query(ctx, pgMailboxes)
	if err != nil {
		return nil, pgErr("postgres mailboxes", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (MailboxStats, error) {
		var m MailboxStats
		var added, next time.Time
		err := r.Scan(&m.Name, &m.Region, &m.Provider, &m.Depth, &added, &m.HeadAttempts, &next)
		fillMailboxTimes(&m, now, added, next)
		return m, err
	})
	return out, pgErr("postgres mailboxes", err)
}

// fillMailboxTimes derives the head's age and next attempt.
func fillMailboxTimes(m *MailboxStats, now, headAdded, headSchedule time.Time) {
	m.OldestAge = max(0, now.Sub(headAdded).Seconds())
	if headSchedule.Before(now) {
		headSchedule = now
	}
	m.NextAttemptAt = headSchedule.UTC()
}

// pgDeadLetterColumns are the columns scanPGDeadLetter reads.
const pgDeadLetterColumns = `id, mailbox_name, coalesce(provider, ''), destination_type, coalesce(region_name, ''),
	coalesce(integration_id, 0), coalesce(callback_url, ''), request_method, request_path, request_headers,
	request_body, coalesce(delivery_key, ''), date_added, schedule_for, attempts, last_status, last_error,
	reason, dead_at, ` + pgAnswerColumns

// DeadLetters pages dead letters by id: rows with id > after.
func (p *Postgres) DeadLetters(ctx context.Context, limit int, after int64) ([]DeadLetter, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := p.pool.Query(ctx, `SELECT `+pgDeadLetterColumns+` FROM silo_dead_letter
		WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, pgErr("postgres dead letters", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetter, error) {
		var d DeadLetter
		var a answer
		var err error
		d.Payload, err = scanPGPayload(r, &d.Reason, &d.DeadAt, &a.answered, &a.body)
		d.DeadAt = d.DeadAt.UTC()
		a.fill(&d.Payload)
		return d, err
	})
	return out, pgErr("postgres dead letters", err)
}

// pgReplayDeadLetter moves a dead letter back to the tail of its mailbox
// in one statement, with its region answer (a callback the region already
// answered is only POSTed again). The delivery key comes along unless a pending row of
// the mailbox took it meanwhile (a provider redelivery): the operator's
// replay must not fail on the unique index.
const pgReplayDeadLetter = `
WITH d AS (DELETE FROM silo_dead_letter WHERE id = $1 RETURNING *)
INSERT INTO silo_webhook_payload (mailbox_name, provider, destination_type, region_name, integration_id,
	date_added, schedule_for, attempts, request_method, request_path, request_headers, request_body,
	delivery_key, callback_url, region_answer)
SELECT d.mailbox_name, d.provider, d.destination_type, d.region_name, d.integration_id,
	$2, $2, 0, d.request_method, d.request_path, d.request_headers, d.request_body,
	CASE WHEN EXISTS (SELECT 1 FROM silo_webhook_payload p
	                  WHERE p.mailbox_name = d.mailbox_name AND p.delivery_key = d.delivery_key)
	     THEN NULL ELSE d.delivery_key END,
	d.callback_url, d.region_answer
FROM d
RETURNING id, mailbox_name`

// ReplayDeadLetter moves a dead letter back to the tail of its
// mailbox (a new id, attempts 0, due now, date_added now so that
// max_age counts from the replay) and returns the new id. The
// replayed row keeps its delivery key unless a pending row of the
// mailbox already holds it, and keeps its region answer: a callback
// the region had answered is POSTed again, the region not called.
func (p *Postgres) ReplayDeadLetter(ctx context.Context, id int64, now time.Time) (int64, error) {
	var newID int64
	var mailbox string
	err := p.pool.QueryRow(ctx, pgReplayDeadLetter, id, now).Scan(&newID, &mailbox)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, pgErr("postgres replay dead letter", err)
	}
	// Wake the drainers; outside the insert's transaction, which is
	// harmless: the poll is the backstop.
	_ = p.Notify(ctx, []string{mailbox})
	return newID, nil
}

// RetryMailbox makes the head of the mailbox due now: every row
// scheduled after now becomes due now (for skip-on-failure mailboxes
// that is every row in backoff). Attempts are kept. ErrNotFound when
// the mailbox is empty.
func (p *Postgres) RetryMailbox(ctx context.Context, mailbox string, now time.Time) error {
	var exists bool
	err := p.pool.QueryRow(ctx, `
		WITH retried AS (UPDATE silo_webhook_payload SET schedule_for = $2
		                 WHERE mailbox_name = $1 AND schedule_for > $2 RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM retried) OR EXISTS (SELECT 1 FROM silo_webhook_payload WHERE mailbox_name = $1)`,
		mailbox, now).Scan(&exists)
	if err != nil {
		return pgErr("postgres retry mailbox", err)
	}
	if !exists {
		return ErrNotFound
	}
	_ = p.Notify(ctx, []string{mailbox})
	return nil
}

// PurgeDeadLetters deletes up to batch dead letters with dead_at <
// before and returns how many it deleted.
//
// Rows another purger is deleting are
// skipped rather than waited for.
func (p *Postgres) PurgeDeadLetters(ctx context.Context, before time.Time, batch int) (int, error) {
	if batch <= 0 {
		return 0, nil
	}
	tag, err := p.pool.Exec(ctx, `DELETE FROM silo_dead_letter WHERE id IN (
		SELECT id FROM silo_dead_letter WHERE dead_at < $1 ORDER BY dead_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
		before, batch)
	if err != nil {
		return 0, pgErr("postgres purge dead letters", err)
	}
	return int(tag.RowsAffected()), nil
}
