package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// DueMailboxes has two ways to find the oldest due rows of mailboxes, each
// cheap where the other is not; see dueMailboxes.
//
// pgDueHeads is a loose index scan on (mailbox_name, id): it jumps from
// each mailbox's head to the next mailbox's head, one index probe per
// mailbox however many rows wait behind the heads, visiting at most $4
// mailboxes. A skip-on-failure mailbox whose head is in backoff then looks
// for its first due row, walking its own rows in id order. The last row
// (NULL name) carries how many mailboxes were visited.
const pgDueHeads = `
WITH RECURSIVE heads AS (
	(SELECT mailbox_name, id, schedule_for, provider, 1 AS n
	 FROM silo_webhook_payload ORDER BY mailbox_name, id LIMIT 1)
	UNION ALL
	SELECT n.mailbox_name, n.id, n.schedule_for, n.provider, h.n + 1
	FROM heads h CROSS JOIN LATERAL (
		SELECT mailbox_name, id, schedule_for, provider FROM silo_webhook_payload p
		WHERE p.mailbox_name > h.mailbox_name ORDER BY mailbox_name, id LIMIT 1) n
	WHERE h.n < $4
),
due AS (
	SELECT h.mailbox_name, CASE
		WHEN h.schedule_for <= $1 THEN h.id
		WHEN coalesce(h.provider, '') = ANY($3::text[]) THEN (
			SELECT p.id FROM silo_webhook_payload p
			WHERE p.mailbox_name = h.mailbox_name AND p.schedule_for <= $1
			ORDER BY p.id LIMIT 1)
	END AS due_id
	FROM heads h
)
(SELECT d.mailbox_name, d.due_id FROM due d
 WHERE d.due_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM silo_mailbox_lease l WHERE l.mailbox_name = d.mailbox_name AND l.lease_until > $1)
 ORDER BY d.due_id
 LIMIT $2)
UNION ALL
SELECT NULL, count(*) FROM heads`

// pgDueWindow reads the $4 oldest rows in id order and keeps those that
// are the due row of their mailbox: a due head, or for a skip-on-failure
// mailbox its first due row. The per-row checks are scalar min()
// subqueries so that they stay index probes (an EXISTS would be planned
// as an anti-join over the whole backlog).
const pgDueWindow = `
SELECT w.mailbox_name FROM (
	SELECT id, mailbox_name, schedule_for, provider FROM silo_webhook_payload ORDER BY id LIMIT $4
) w
WHERE w.schedule_for <= $1
  AND ((SELECT min(e.id) FROM silo_webhook_payload e WHERE e.mailbox_name = w.mailbox_name AND e.id < w.id) IS NULL
       OR (coalesce(w.provider, '') = ANY($3::text[])
           AND (SELECT min(e.id) FROM silo_webhook_payload e
                WHERE e.mailbox_name = w.mailbox_name AND e.id < w.id AND e.schedule_for <= $1) IS NULL))
  AND NOT EXISTS (SELECT 1 FROM silo_mailbox_lease l WHERE l.mailbox_name = w.mailbox_name AND l.lease_until > $1)
ORDER BY w.id
LIMIT $2`

// DueMailboxes lists up to limit mailboxes that have work now: for
// strict mailboxes a head (lowest id) with schedule_for <= now, for
// mailboxes of skipOnFailure providers any row due now; and no live
// lease. Ordered by the id of that row, oldest first.
func (p *Postgres) DueMailboxes(ctx context.Context, now time.Time, limit int, skipOnFailure []string) ([]string, error) {
	if skipOnFailure == nil {
		skipOnFailure = []string{}
	}
	names, err := dueMailboxes(limit,
		func(visit int) ([]string, int, error) {
			rows, err := p.pool.Query(ctx, pgDueHeads, now, limit, skipOnFailure, visit)
			if err != nil {
				return nil, 0, err
			}
			var names []string
			visited := 0
			for rows.Next() {
				var name *string
				var n int64
				if err := rows.Scan(&name, &n); err != nil {
					rows.Close()
					return nil, 0, err
				}
				if name == nil {
					visited = int(n)
				} else {
					names = append(names, *name)
				}
			}
			return names, visited, rows.Err()
		},
		func(window int) ([]string, error) {
			rows, err := p.pool.Query(ctx, pgDueWindow, now, limit, skipOnFailure, window)
			if err != nil {
				return nil, err
			}
			return pgx.CollectRows(rows, pgx.RowTo[string])
		})
	return names, pgErr("postgres due mailboxes", err)
}

// pgClaimMailbox inserts the lease, or takes it over when it has lapsed
// (or is already ours), in one statement. Two claimers of one mailbox
// serialise on the lease row; the second sees the first's live lease in
// the WHERE and gets no row back.
//
// It claims nothing while the epoch row (the empty mailbox name, see migration
// 0005) is live, and puts that row back, live for one lease length, when
// it is missing: the lease table is UNLOGGED, and a crash or a failover
// that emptied it must not let a second drainer deliver a mailbox whose
// former holder is still recording what it delivered. Of two claimers
// that find the row missing, one inserts it and the other waits for that
// insert, then, not seeing the row in its snapshot, claims nothing either.
const pgClaimMailbox = `
WITH epoch AS (
	INSERT INTO silo_mailbox_lease (mailbox_name, owner, lease_until) VALUES ('', '', $3)
	ON CONFLICT (mailbox_name) DO NOTHING
	RETURNING lease_until
), since AS (
	SELECT lease_until FROM epoch
	UNION ALL
	SELECT lease_until FROM silo_mailbox_lease WHERE mailbox_name = ''
)
INSERT INTO silo_mailbox_lease AS l (mailbox_name, owner, lease_until)
SELECT $1, $2, $3 WHERE (SELECT max(lease_until) FROM since) <= $4
ON CONFLICT (mailbox_name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
WHERE l.lease_until <= $4 OR l.owner = excluded.owner
RETURNING 1`

// ClaimMailbox takes the lease on a mailbox for owner until
// leaseUntil, unless another owner holds a live lease. It reports
// whether the lease was taken. After the server lost every lease (a
// crash, or a standby promoted), nothing is claimed for one lease length
// (leaseUntil - now): see pgClaimMailbox.
func (p *Postgres) ClaimMailbox(ctx context.Context, mailbox, owner string, now, leaseUntil time.Time) (bool, error) {
	rows, err := p.pool.Query(ctx, pgClaimMailbox, mailbox, owner, leaseUntil, now)
	if err != nil {
		return false, pgErr("postgres claim mailbox", err)
	}
	n, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	return len(n) == 1, pgErr("postgres claim mailbox", err)
}

// RenewLease extends owner's lease; false means the lease was lost.
//
// A lapsed lease nobody took over is still
// the owner's and is renewed.
func (p *Postgres) RenewLease(ctx context.Context, mailbox, owner string, leaseUntil time.Time) (bool, error) {
	tag, err := p.pool.Exec(ctx, `UPDATE silo_mailbox_lease SET lease_until = $3 WHERE mailbox_name = $1 AND owner = $2`,
		mailbox, owner, leaseUntil)
	if err != nil {
		return false, pgErr("postgres renew lease", err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseMailbox drops owner's lease.
func (p *Postgres) ReleaseMailbox(ctx context.Context, mailbox, owner string) error {
	_, err := p.pool.Exec(ctx, `DELETE FROM silo_mailbox_lease WHERE mailbox_name = $1 AND owner = $2`, mailbox, owner)
	return pgErr("postgres release mailbox", err)
}

// NextPayloads returns up to limit rows of the mailbox with id >
// afterID, in id order. With dueOnly, rows not due at now are left
// out (skip-on-failure providers); otherwise every row is returned
// and the caller stops at the first one not due.
func (p *Postgres) NextPayloads(ctx context.Context, mailbox string, afterID int64, now time.Time, dueOnly bool, limit int) ([]Payload, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := p.pool.Query(ctx, `SELECT `+pgPayloadColumns+`, `+pgAnswerColumns+` FROM silo_webhook_payload
		WHERE mailbox_name = $1 AND id > $2 AND (NOT $3 OR schedule_for <= $4)
		ORDER BY id LIMIT $5`, mailbox, afterID, dueOnly, now, limit)
	if err != nil {
		return nil, pgErr("postgres next payloads", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Payload, error) {
		var a answer
		p, err := scanPGPayload(r, &a.answered, &a.body)
		a.fill(&p)
		return p, err
	})
	return out, pgErr("postgres next payloads", err)
}

// pgAnswerColumns read region_answer after the payload columns: whether
// the region answered, and the answer (empty when it did not).
const pgAnswerColumns = `region_answer IS NOT NULL, coalesce(region_answer, ''::bytea)`

// answer is what the answer columns scan into.
type answer struct {
	answered bool
	body     []byte
}

func (a answer) fill(p *Payload) {
	p.Answered = a.answered
	if a.answered {
		p.RegionAnswer = a.body
		if p.RegionAnswer == nil {
			p.RegionAnswer = []byte{}
		}
	}
}

// RecordRegionAnswer keeps the region's answer to a callback payload
// and, in the same statement, moves the row to mailbox (the callback
// mailbox the drainer names for it), due at now, with attempts 0 and
// lastStatus the region's status: from then on it waits only for its
// POST to the response_url, and holds no other row of its old
// mailbox. The row keeps its id. ErrNotFound if gone.
func (p *Postgres) RecordRegionAnswer(ctx context.Context, id int64, mailbox string, answer []byte, lastStatus int, now time.Time) error {
	if answer == nil {
		answer = []byte{}
	}
	tag, err := p.pool.Exec(ctx, `UPDATE silo_webhook_payload
		SET region_answer = $2, mailbox_name = $3, attempts = 0, schedule_for = $4, last_status = $5, last_error = ''
		WHERE id = $1`, id, answer, mailbox, now, lastStatus)
	if err != nil {
		return pgErr("postgres record region answer", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// DeletePayload removes a delivered row (ErrNotFound if gone).
func (p *Postgres) DeletePayload(ctx context.Context, id int64) error {
	tag, err := p.pool.Exec(ctx, `DELETE FROM silo_webhook_payload WHERE id = $1`, id)
	if err != nil {
		return pgErr("postgres delete payload", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// ReschedulePayload records a failed attempt (ErrNotFound if gone).
func (p *Postgres) ReschedulePayload(ctx context.Context, id int64, attempts int, scheduleFor time.Time, lastStatus int, lastError string) error {
	tag, err := p.pool.Exec(ctx, `UPDATE silo_webhook_payload
		SET attempts = $2, schedule_for = $3, last_status = $4, last_error = $5 WHERE id = $1`,
		id, attempts, scheduleFor, lastStatus, lastError)
	if err != nil {
		return pgErr("postgres reschedule payload", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// pgDeadLetterPayload moves a payload in one statement: the DELETE and
// the INSERT commit together or not at all.
const pgDeadLetterPayload = `
WITH moved AS (DELETE FROM silo_webhook_payload WHERE id = $1 RETURNING *)
INSERT INTO silo_dead_letter (id, mailbox_name, provider, destination_type, region_name, integration_id,
	date_added, schedule_for, attempts, request_method, request_path, request_headers, request_body,
	delivery_key, callback_url, region_answer, reason, last_status, last_error, dead_at)
SELECT id, mailbox_name, provider, destination_type, region_name, integration_id,
	date_added, schedule_for, attempts, request_method, request_path, request_headers, request_body,
	delivery_key, callback_url, region_answer, $2, $3, $4, $5
FROM moved`

// DeadLetterPayload moves a row to silo_dead_letter in one
// transaction, so it is never lost in between. The dead letter keeps
// the payload's id, which is never reused (ErrNotFound if gone).
func (p *Postgres) DeadLetterPayload(ctx context.Context, id int64, reason string, lastStatus int, lastError string, now time.Time) error {
	tag, err := p.pool.Exec(ctx, pgDeadLetterPayload, id, reason, lastStatus, lastError, now)
	if err != nil {
		return pgErr("postgres dead-letter payload", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
