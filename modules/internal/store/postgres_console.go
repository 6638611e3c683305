package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgMailboxHeads is a loose index scan on (mailbox_name, id) from after:
// one index probe per mailbox to its head, however many rows wait behind
// it, up to $2 mailboxes, in name order.
const pgMailboxHeads = `
WITH RECURSIVE heads AS (
	(SELECT mailbox_name, id, region_name, provider, date_added, schedule_for, attempts, last_status, last_error, 1 AS n
	 FROM silo_webhook_payload WHERE mailbox_name > $1 ORDER BY mailbox_name, id LIMIT 1)
	UNION ALL
	SELECT x.*, h.n + 1 FROM heads h CROSS JOIN LATERAL (
		SELECT mailbox_name, id, region_name, provider, date_added, schedule_for, attempts, last_status, last_error
		FROM silo_webhook_payload p WHERE p.mailbox_name > h.mailbox_name ORDER BY mailbox_name, id LIMIT 1) x
	WHERE h.n < $2
)
SELECT mailbox_name, id, coalesce(region_name, ''), coalesce(provider, ''), date_added, schedule_for,
	attempts, last_status, last_error
FROM heads`

// MailboxHeads lists up to limit mailboxes whose names sort after after
// ("" for the first), in name order, each with its head row. A mailbox
// exists while it has a pending payload.
func (p *Postgres) MailboxHeads(ctx context.Context, after string, limit int) ([]MailboxHead, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := p.pool.Query(ctx, pgMailboxHeads, after, limit)
	if err != nil {
		return nil, pgErr("postgres mailbox heads", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (MailboxHead, error) {
		var h MailboxHead
		err := r.Scan(&h.Name, &h.HeadID, &h.Region, &h.Provider, &h.DateAdded, &h.ScheduleFor,
			&h.Attempts, &h.LastStatus, &h.LastError)
		h.DateAdded, h.ScheduleFor = h.DateAdded.UTC(), h.ScheduleFor.UTC()
		return h, err
	})
	return out, pgErr("postgres mailbox heads", err)
}

// pgMailboxDepths counts each mailbox's rows on the (mailbox_name, id)
// index, stopping at $2. The ORDER BY makes it an index scan that stops
// there: without it PostgreSQL chose a bitmap scan, which reads every
// index entry of the mailbox before the LIMIT applies (100 mailboxes of
// 10,000 rows capped at 1,000: 633 ms, against 12-60 ms).
const pgMailboxDepths = `
SELECT (SELECT count(*) FROM (SELECT 1 FROM silo_webhook_payload p WHERE p.mailbox_name = m.name
	ORDER BY p.mailbox_name, p.id LIMIT $2) c)
FROM unnest($1::text[]) WITH ORDINALITY AS m(name, n) ORDER BY m.n`

// MailboxDepths counts the pending rows of each mailbox, in the order
// of names, up to limit each: a mailbox deeper than limit counts limit.
func (p *Postgres) MailboxDepths(ctx context.Context, names []string, limit int) ([]int64, error) {
	if len(names) == 0 {
		return nil, nil
	}
	rows, err := p.pool.Query(ctx, pgMailboxDepths, names, limit)
	if err != nil {
		return nil, pgErr("postgres mailbox depths", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	return out, pgErr("postgres mailbox depths", err)
}

// pgSummaryColumns are summaryColumns for PostgreSQL.
var pgSummaryColumns = summaryColumns("octet_length")

// scanPGSummary reads pgSummaryColumns and the extra columns after them.
func scanPGSummary(r pgx.Row, s *RowSummary, extra ...any) error {
	err := r.Scan(append(summaryDest(s, &s.DateAdded), extra...)...)
	s.DateAdded = s.DateAdded.UTC()
	return err
}

// ListPayloads pages the pending payloads matching f by id: up to limit
// rows with id > after.
func (p *Postgres) ListPayloads(ctx context.Context, f RowFilter, after int64, limit int) ([]RowSummary, error) {
	a := pgArgs()
	q := `SELECT ` + pgSummaryColumns + `, schedule_for FROM silo_webhook_payload
		WHERE ` + f.where(a, "date_added", "id > "+a.add(after)) + ` ORDER BY id LIMIT ` + a.add(limit)
	rows, err := p.pool.Query(ctx, q, a.vals...)
	if err != nil {
		return nil, pgErr("postgres list payloads", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RowSummary, error) {
		var s RowSummary
		err := scanPGSummary(r, &s, &s.ScheduleFor)
		s.ScheduleFor = s.ScheduleFor.UTC()
		return s, err
	})
	return out, pgErr("postgres list payloads", err)
}

// Payload reads one pending payload (ErrNotFound when it is not pending).
func (p *Postgres) Payload(ctx context.Context, id int64) (Payload, error) {
	var a answer
	pl, err := scanPGPayload(p.pool.QueryRow(ctx, `SELECT `+pgPayloadColumns+`, `+pgAnswerColumns+`
		FROM silo_webhook_payload WHERE id = $1`, id), &a.answered, &a.body)
	if errors.Is(err, pgx.ErrNoRows) {
		return Payload{}, ErrNotFound
	}
	a.fill(&pl)
	return pl, pgErr("postgres payload", err)
}

// ListDeadLetters pages the dead letters matching f by id: up to limit
// rows with id > after.
func (p *Postgres) ListDeadLetters(ctx context.Context, f RowFilter, after int64, limit int) ([]DeadLetterSummary, error) {
	a := pgArgs()
	q := `SELECT ` + pgSummaryColumns + `, reason, dead_at FROM silo_dead_letter
		WHERE ` + f.where(a, "dead_at", "id > "+a.add(after)) + ` ORDER BY id LIMIT ` + a.add(limit)
	rows, err := p.pool.Query(ctx, q, a.vals...)
	if err != nil {
		return nil, pgErr("postgres list dead letters", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetterSummary, error) {
		var d DeadLetterSummary
		err := scanPGSummary(r, &d.RowSummary, &d.Reason, &d.DeadAt)
		d.DeadAt = d.DeadAt.UTC()
		return d, err
	})
	return out, pgErr("postgres list dead letters", err)
}

// DeadLetter reads one dead letter, whole (ErrNotFound when it does not
// exist).
func (p *Postgres) DeadLetter(ctx context.Context, id int64) (DeadLetter, error) {
	var d DeadLetter
	var a answer
	var err error
	d.Payload, err = scanPGPayload(p.pool.QueryRow(ctx, `SELECT `+pgDeadLetterColumns+` FROM silo_dead_letter WHERE id = $1`, id),
		&d.Reason, &d.DeadAt, &a.answered, &a.body)
	if errors.Is(err, pgx.ErrNoRows) {
		return DeadLetter{}, ErrNotFound
	}
	d.DeadAt = d.DeadAt.UTC()
	a.fill(&d.Payload)
	return d, pgErr("postgres dead letter", err)
}

// DeleteDeadLetter deletes one dead letter (ErrNotFound when it does not
// exist).
func (p *Postgres) DeleteDeadLetter(ctx context.Context, id int64) error {
	return p.execOne(ctx, "postgres delete dead letter", `DELETE FROM silo_dead_letter WHERE id = $1`, id)
}

// MaxDeadLetterID is the highest dead letter id, 0 when there is none: a
// bulk action takes only the rows up to it, so that the replays that die
// again meanwhile are not taken twice.
func (p *Postgres) MaxDeadLetterID(ctx context.Context) (int64, error) {
	var id int64
	err := p.pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM silo_dead_letter`).Scan(&id)
	return id, pgErr("postgres max dead letter id", err)
}

// pgReplayColumns are the columns a replay inserts, after id.
const pgReplayColumns = `mailbox_name, provider, destination_type, region_name, integration_id,
	date_added, schedule_for, attempts, request_method, request_path, request_headers, request_body,
	delivery_key, callback_url, region_answer`

// pgReplayValues are their values from a batch row r (see replayKey); $1
// is the replay's time.
const pgReplayValues = `r.mailbox_name, r.provider, r.destination_type, r.region_name, r.integration_id,
	$1, $1, 0, r.request_method, r.request_path, r.request_headers, r.request_body,
	` + replayKey + `, r.callback_url, r.region_answer`

// pgBatchIDsByRank draws one payload id per picked row, ascending, so
// that the row of rank k gets the k-th smallest: the batch keeps its
// order in the mailboxes whatever order the rows are inserted in.
const pgBatchIDsByRank = `ids AS (SELECT array_agg(v ORDER BY v) AS v FROM
	(SELECT nextval('silo_webhook_payload_id_seq') AS v FROM picked) s)`

// ReplayDeadLetters moves up to batch dead letters matching f with id
// <= upto back to the tails of their mailboxes, in id order, in one
// statement, as ReplayDeadLetter does for one. Rows another transaction
// holds are skipped. It wakes the mailboxes' drainers.
func (p *Postgres) ReplayDeadLetters(ctx context.Context, f RowFilter, upto int64, batch int, now time.Time) (Replayed, error) {
	a := pgArgs()
	a.add(now)
	q := `WITH picked AS (SELECT id, row_number() OVER (ORDER BY id) AS rank FROM (
			SELECT id FROM silo_dead_letter WHERE ` + f.where(a, "dead_at", "id <= "+a.add(upto)) + `
			ORDER BY id LIMIT ` + a.add(batch) + ` FOR UPDATE SKIP LOCKED) s),
		` + pgBatchIDsByRank + `,
		d AS (DELETE FROM silo_dead_letter x USING picked WHERE x.id = picked.id RETURNING x.*, picked.rank),
		r AS (SELECT d.*, ` + replayRank + ` FROM d)
		INSERT INTO silo_webhook_payload (id, ` + pgReplayColumns + `)
		SELECT (SELECT v FROM ids)[r.rank], ` + pgReplayValues + ` FROM r
		RETURNING mailbox_name`
	return p.replayBatch(ctx, "postgres replay dead letters", q, a.vals)
}

// replayBatch runs a bulk replay statement that returns the mailboxes of
// the rows it inserted, and wakes them.
func (p *Postgres) replayBatch(ctx context.Context, op, q string, args []any) (Replayed, error) {
	rows, err := p.pool.Query(ctx, q, args...)
	if err != nil {
		return Replayed{}, pgErr(op, err)
	}
	boxes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return Replayed{}, pgErr(op, err)
	}
	r := Replayed{Count: len(boxes), Mailboxes: distinct(boxes)}
	// Outside the statement, as for one replay: the poll is the backstop.
	_ = p.Notify(ctx, r.Mailboxes)
	return r, nil
}

// DeleteDeadLetters deletes up to batch dead letters matching f with id
// <= upto, lowest ids first, and returns how many.
func (p *Postgres) DeleteDeadLetters(ctx context.Context, f RowFilter, upto int64, batch int) (int, error) {
	a := pgArgs()
	q := `DELETE FROM silo_dead_letter WHERE id IN (SELECT id FROM silo_dead_letter
		WHERE ` + f.where(a, "dead_at", "id <= "+a.add(upto)) + ` ORDER BY id LIMIT ` + a.add(batch) + ` FOR UPDATE SKIP LOCKED)`
	tag, err := p.pool.Exec(ctx, q, a.vals...)
	if err != nil {
		return 0, pgErr("postgres delete dead letters", err)
	}
	return int(tag.RowsAffected()), nil
}

// pgDeliverPayload moves a delivered payload to the history in one
// statement: the DELETE and the INSERT commit together or not at all.
const pgDeliverPayload = `
WITH moved AS (DELETE FROM silo_webhook_payload WHERE id = $1 RETURNING *)
INSERT INTO silo_delivered (id, mailbox_name, provider, destination_type, region_name, integration_id, date_added,
	attempts, request_method, request_path, request_headers, request_body, delivery_key, callback_url,
	region_answer, last_status, last_error, status, duration_us, delivered_at)
SELECT id, mailbox_name, provider, destination_type, region_name, integration_id, date_added,
	attempts + 1, request_method, request_path, request_headers, request_body, delivery_key, callback_url,
	region_answer, last_status, last_error, $2, $3, $4
FROM moved`

// DeliverPayload removes a delivered row from its mailbox and keeps it in
// the history (silo_delivered) with d, in one transaction: what
// DeletePayload does when the drainer's delivered_retention is on.
// ErrNotFound if the row is gone.
func (p *Postgres) DeliverPayload(ctx context.Context, id int64, d Delivery) error {
	return p.execOne(ctx, "postgres deliver payload", pgDeliverPayload, id, d.Status, d.Duration.Microseconds(), d.At)
}

// PurgeDelivered deletes up to batch delivered rows with delivered_at <
// before and returns how many it deleted, skipping rows another purger
// holds.
func (p *Postgres) PurgeDelivered(ctx context.Context, before time.Time, batch int) (int, error) {
	if batch <= 0 {
		return 0, nil
	}
	tag, err := p.pool.Exec(ctx, `DELETE FROM silo_delivered WHERE id IN (
		SELECT id FROM silo_delivered WHERE delivered_at < $1 ORDER BY delivered_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
		before, batch)
	if err != nil {
		return 0, pgErr("postgres purge delivered", err)
	}
	return int(tag.RowsAffected()), nil
}

// pgDeliveredInfoColumns are what DeliveredInfo scans.
const pgDeliveredInfoColumns = `status, duration_us, delivered_at, replayed_at, coalesce(replayed_as, 0)`

// deliveredScan receives pgDeliveredInfoColumns.
type deliveredScan struct {
	micros   int64
	replayed *time.Time
}

func (s *deliveredScan) dest(d *DeliveredInfo) []any {
	return []any{&d.Status, &s.micros, &d.At, &s.replayed, &d.ReplayedAs}
}

func (s *deliveredScan) fill(d *DeliveredInfo) {
	d.Duration = time.Duration(s.micros) * time.Microsecond
	d.At = d.At.UTC()
	if s.replayed != nil {
		d.ReplayedAt = s.replayed.UTC()
	}
}

// ListDelivered pages the history matching f in delivery order: up to
// limit rows after the cursor (the zero cursor starts at the oldest).
func (p *Postgres) ListDelivered(ctx context.Context, f RowFilter, after DeliveredCursor, limit int) ([]DeliveredSummary, error) {
	a := pgArgs()
	cursor := "(delivered_at, id) > (" + a.add(after.At) + ", " + a.add(after.ID) + ")"
	q := `SELECT ` + pgSummaryColumns + `, ` + pgDeliveredInfoColumns + ` FROM silo_delivered
		WHERE ` + f.where(a, "delivered_at", cursor) + ` ORDER BY delivered_at, id LIMIT ` + a.add(limit)
	rows, err := p.pool.Query(ctx, q, a.vals...)
	if err != nil {
		return nil, pgErr("postgres list delivered", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeliveredSummary, error) {
		var d DeliveredSummary
		var s deliveredScan
		err := scanPGSummary(r, &d.RowSummary, s.dest(&d.DeliveredInfo)...)
		s.fill(&d.DeliveredInfo)
		return d, err
	})
	return out, pgErr("postgres list delivered", err)
}

// pgDeliveredColumns are pgPayloadColumns for silo_delivered, which has no
// schedule_for (date_added stands in), then the answer and delivery
// columns.
const pgDeliveredColumns = `id, mailbox_name, coalesce(provider, ''), destination_type, coalesce(region_name, ''),
	coalesce(integration_id, 0), coalesce(callback_url, ''), request_method, request_path, request_headers,
	request_body, coalesce(delivery_key, ''), date_added, date_added, attempts, last_status, last_error, ` +
	pgAnswerColumns + `, ` + pgDeliveredInfoColumns

// Delivered reads one delivered row, whole (ErrNotFound when it is not
// in the history).
func (p *Postgres) Delivered(ctx context.Context, id int64) (DeliveredPayload, error) {
	var d DeliveredPayload
	var a answer
	var s deliveredScan
	var err error
	d.Payload, err = scanPGPayload(p.pool.QueryRow(ctx, `SELECT `+pgDeliveredColumns+` FROM silo_delivered WHERE id = $1`, id),
		append([]any{&a.answered, &a.body}, s.dest(&d.DeliveredInfo)...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return DeliveredPayload{}, ErrNotFound
	}
	a.fill(&d.Payload)
	s.fill(&d.DeliveredInfo)
	return d, pgErr("postgres delivered", err)
}

// ReplayDelivered puts a copy of a delivered row at the tail of its
// mailbox (a new id, attempts 0, due now, date_added now) and marks the
// row replayed, in one statement, and returns the copy's id. The copy
// keeps the row's delivery key unless a pending row of the mailbox
// holds it. A row replayed already is ErrAlreadyReplayed unless again;
// a missing one ErrNotFound.
func (p *Postgres) ReplayDelivered(ctx context.Context, id int64, again bool, now time.Time) (int64, error) {
	var newID int64
	var mailbox string
	err := p.pool.QueryRow(ctx, `
		WITH picked AS (SELECT id, 1 AS rank FROM silo_delivered WHERE id = $2 AND ($3 OR replayed_at IS NULL) FOR UPDATE),
		`+pgBatchIDsByRank+`,
		d AS (UPDATE silo_delivered x SET replayed_at = $1, replayed_as = (SELECT v[1] FROM ids)
		      FROM picked WHERE x.id = picked.id RETURNING x.*, picked.rank),
		r AS (SELECT d.*, 1 AS k FROM d)
		INSERT INTO silo_webhook_payload (id, `+pgReplayColumns+`)
		SELECT r.replayed_as, `+pgReplayValues+` FROM r
		RETURNING id, mailbox_name`, now, id, again).Scan(&newID, &mailbox)
	if errors.Is(err, pgx.ErrNoRows) {
		var exists bool
		if err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM silo_delivered WHERE id = $1)`, id).Scan(&exists); err != nil {
			return 0, pgErr("postgres replay delivered", err)
		}
		if exists {
			return 0, ErrAlreadyReplayed
		}
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, pgErr("postgres replay delivered", err)
	}
	_ = p.Notify(ctx, []string{mailbox})
	return newID, nil
}

// ReplayDeliveredRows puts copies of up to batch delivered rows matching
// f, delivered before before and not replayed yet, at the tails of their
// mailboxes in delivery order, and marks them replayed, in one
// statement. Rows another transaction holds are skipped. It wakes the
// mailboxes' drainers.
func (p *Postgres) ReplayDeliveredRows(ctx context.Context, f RowFilter, before time.Time, batch int, now time.Time) (Replayed, error) {
	a := pgArgs()
	a.add(now)
	where := f.where(a, "delivered_at", "replayed_at IS NULL", "delivered_at < "+a.add(before))
	q := `WITH picked AS (SELECT id, row_number() OVER (ORDER BY delivered_at, id) AS rank FROM (
			SELECT id, delivered_at FROM silo_delivered WHERE ` + where + `
			ORDER BY delivered_at, id LIMIT ` + a.add(batch) + ` FOR UPDATE SKIP LOCKED) s),
		` + pgBatchIDsByRank + `,
		d AS (UPDATE silo_delivered x SET replayed_at = $1, replayed_as = (SELECT v FROM ids)[picked.rank]
		      FROM picked WHERE x.id = picked.id RETURNING x.*, picked.rank),
		r AS (SELECT d.*, ` + replayRank + ` FROM d)
		INSERT INTO silo_webhook_payload (id, ` + pgReplayColumns + `)
		SELECT r.replayed_as, ` + pgReplayValues + ` FROM r
		RETURNING mailbox_name`
	return p.replayBatch(ctx, "postgres replay delivered rows", q, a.vals)
}

// DeleteDelivered deletes one delivered row (ErrNotFound when it is not
// in the history).
func (p *Postgres) DeleteDelivered(ctx context.Context, id int64) error {
	return p.execOne(ctx, "postgres delete delivered", `DELETE FROM silo_delivered WHERE id = $1`, id)
}

// DeleteDeliveredRows deletes up to batch delivered rows matching f,
// delivered before before, oldest first, and returns how many.
func (p *Postgres) DeleteDeliveredRows(ctx context.Context, f RowFilter, before time.Time, batch int) (int, error) {
	a := pgArgs()
	q := `DELETE FROM silo_delivered WHERE id IN (SELECT id FROM silo_delivered
		WHERE ` + f.where(a, "delivered_at", "delivered_at < "+a.add(before)) + `
		ORDER BY delivered_at, id LIMIT ` + a.add(batch) + ` FOR UPDATE SKIP LOCKED)`
	tag, err := p.pool.Exec(ctx, q, a.vals...)
	if err != nil {
		return 0, pgErr("postgres delete delivered rows", err)
	}
	return int(tag.RowsAffected()), nil
}

// pgPause inserts a pause unless one is in force, and returns the pause
// in force either way, and whether it is this one.
const pgPause = `
WITH ins AS (
	INSERT INTO silo_pause (kind, name, paused_at, paused_by, reason) VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (kind, name) DO NOTHING
	RETURNING kind, name, paused_at, paused_by, reason, true AS created)
SELECT * FROM ins
UNION ALL
SELECT kind, name, paused_at, paused_by, reason, false FROM silo_pause
WHERE kind = $1 AND name = $2 AND NOT EXISTS (SELECT 1 FROM ins)`

// Pause records a pause of a region or a mailbox, unless one is in force
// already (then that one is kept and returned, and created is false), and
// wakes every instance's drainer to read the pauses again.
func (p *Postgres) Pause(ctx context.Context, pause Pause) (Pause, bool, error) {
	if err := checkPauseKind(pause.Kind); err != nil {
		return Pause{}, false, err
	}
	var out Pause
	var created bool
	var err error
	// A pause inserted by another transaction while this statement ran is
	// invisible to its snapshot: the second try sees it.
	for range 2 {
		err = p.pool.QueryRow(ctx, pgPause, pause.Kind, pause.Name, pause.PausedAt, pause.PausedBy, pause.Reason).
			Scan(&out.Kind, &out.Name, &out.PausedAt, &out.PausedBy, &out.Reason, &created)
		if !errors.Is(err, pgx.ErrNoRows) {
			break
		}
	}
	if err != nil {
		return Pause{}, false, pgErr("postgres pause", err)
	}
	out.PausedAt = out.PausedAt.UTC()
	p.notifyPauses(ctx)
	return out, created, nil
}

// notifyPauses wakes every instance's drainer for a full scan, which
// reads the pauses again (the empty mailbox name means "look at
// everything" to a listener).
func (p *Postgres) notifyPauses(ctx context.Context) { _ = p.Notify(ctx, []string{""}) }

// Resume lifts a pause and reports whether there was one; it wakes every
// instance's drainer, whose paused mailboxes are due again.
func (p *Postgres) Resume(ctx context.Context, kind, name string) (bool, error) {
	if err := checkPauseKind(kind); err != nil {
		return false, err
	}
	tag, err := p.pool.Exec(ctx, `DELETE FROM silo_pause WHERE kind = $1 AND name = $2`, kind, name)
	if err != nil {
		return false, pgErr("postgres resume", err)
	}
	p.notifyPauses(ctx)
	return tag.RowsAffected() == 1, nil
}

// Pauses lists the pauses in force: regions first, then by name.
func (p *Postgres) Pauses(ctx context.Context) ([]Pause, error) {
	rows, err := p.pool.Query(ctx, `SELECT kind, name, paused_at, paused_by, reason FROM silo_pause
		ORDER BY kind <> 'region', name`)
	if err != nil {
		return nil, pgErr("postgres pauses", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Pause, error) {
		var ps Pause
		err := r.Scan(&ps.Kind, &ps.Name, &ps.PausedAt, &ps.PausedBy, &ps.Reason)
		ps.PausedAt = ps.PausedAt.UTC()
		return ps, err
	})
	return out, pgErr("postgres pauses", err)
}

// checkPauseKind refuses a kind silo_pause does not hold.
func checkPauseKind(kind string) error {
	if kind != PauseRegion && kind != PauseMailbox {
		return fmt.Errorf("store: pause kind %q: must be %q or %q", kind, PauseRegion, PauseMailbox)
	}
	return nil
}

// execOne runs a statement that must touch a row (ErrNotFound otherwise).
func (p *Postgres) execOne(ctx context.Context, op, q string, args ...any) error {
	tag, err := p.pool.Exec(ctx, q, args...)
	if err != nil {
		return pgErr(op, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
