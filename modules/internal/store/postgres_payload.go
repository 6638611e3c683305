package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// InsertPayloads stores all payloads in one transaction (group
// commit): when it returns nil, every row is durable. Rows get
// increasing ids in slice order, so FIFO follows the batch. A
// duplicate whose pending row was delivered (deleted) while the
// batch committed reports Duplicate with ID 0.
//
// A batch below pgCopyThreshold rows is
// one multi-row INSERT from arrays (insertArrays): one round trip, one
// implicit transaction. From pgCopyThreshold rows it goes through COPY
// (insertCopy). BenchmarkInsertPayloadsPostgresInterleaved chose both
// against one INSERT per row in a pgx.Batch: per-row is ~20% faster for a
// single row, the arrays ~20-40% faster from 16 to 128 rows, COPY ~40%
// faster at 512 rows. Either way the rows go in the order planInsert
// gives, and the ids of the pending rows that keyed payloads duplicate
// are read only when there are duplicates.
func (p *Postgres) InsertPayloads(ctx context.Context, payloads []NewPayload) ([]InsertResult, error) {
	if len(payloads) == 0 {
		return nil, nil
	}
	plan := planInsert(payloads)
	if len(plan.order) >= pgCopyThreshold {
		headers, err := prepareInsert(payloads)
		if err != nil {
			return nil, err
		}
		return p.insertCopy(ctx, payloads, headers, plan)
	}
	if err := checkInsert(payloads); err != nil {
		return nil, err
	}
	return p.insertArrays(ctx, payloads, plan)
}

// insertPlan is the order in which a batch's rows are inserted, and the
// rank of each in batch order, which its id follows.
//
// Two batches that carry the same delivery keys (a provider retrying a
// delivery still in flight) each wait on the other's unique-index entries
// when they insert them in different orders: a deadlock, which PostgreSQL
// breaks only after deadlock_timeout (1 s) by failing one batch. Measured
// with 32 clients sending every GitHub delivery id twice: 14 deadlocks in
// 12 s, p99 1.0 s, 0.06x the rate of unique ids
// (TestPostgresCrossBatchDuplicatesDoNotDeadlock reproduces it). So every
// batch inserts its keyed rows sorted by (mailbox, key), byte order,
// decided here rather than by a database collation: a transaction waiting
// for a key then holds only smaller ones, and no cycle can form. A key
// repeated within the batch is sent once; matchInserted answers the
// repeats. Unkeyed rows have no unique entry and go first, in batch
// order. The ids are drawn from the sequence in rank order, so ids still
// follow the batch within a mailbox (FIFO).
type insertPlan struct {
	order []int   // indexes into the batch, in insertion order
	rank  []int32 // rank[k]: 1-based position of order[k] among the sent rows, in batch order
}

func planInsert(payloads []NewPayload) insertPlan {
	n := len(payloads)
	order := make([]int, 0, n)
	var keyed []int
	for i := range payloads {
		if payloads[i].DeliveryKey == "" {
			order = append(order, i)
		} else {
			keyed = append(keyed, i)
		}
	}
	if len(keyed) == 0 {
		rank := make([]int32, n)
		for i := range rank {
			rank[i] = int32(i + 1)
		}
		return insertPlan{order: order, rank: rank}
	}
	byKey := func(a, b int) int {
		if c := strings.Compare(payloads[a].MailboxName, payloads[b].MailboxName); c != 0 {
			return c
		}
		return strings.Compare(payloads[a].DeliveryKey, payloads[b].DeliveryKey)
	}
	// Stable: of a repeated key, the first in batch order is the one sent.
	slices.SortStableFunc(keyed, byKey)
	for k, i := range keyed {
		if k > 0 && byKey(keyed[k-1], i) == 0 {
			continue
		}
		order = append(order, i)
	}
	sent := make([]int32, n) // 1-based rank in batch order, 0 if not sent
	for _, i := range order {
		sent[i] = 1
	}
	var r int32
	for i := range sent {
		if sent[i] != 0 {
			r++
			sent[i] = r
		}
	}
	rank := make([]int32, len(order))
	for k, i := range order {
		rank[k] = sent[i]
	}
	return insertPlan{order: order, rank: rank}
}

// pgBatchIDs draws one id per row of the statement from the table's
// sequence, from a row source of that many rows (%s), so that the row of
// rank r gets the r-th smallest. The array is ascending as built: each
// value is drawn as its row reaches the aggregate, and a sequence only
// grows. It is an uncorrelated subquery: evaluated once per statement.
// Every id carries the server's WAL timeline above bit 44, computed once
// per statement too, as the column's default does (migration 0006, which
// says why: no id is handed out again after a failover). The expression
// is here rather than in a function of the schema so that inserts work on
// a schema not yet migrated.
const pgBatchIDs = `(SELECT array_agg(v + (SELECT ` + pgTimelineBase + `)) FROM (SELECT nextval('silo_webhook_payload_id_seq') AS v FROM %s) AS s)`

// pgTimelineBase is the current WAL timeline less one, shifted above bit
// 44: the first 8 hex digits of the name pg_walfile_name gives an LSN are
// the current insert timeline. A server that was never promoted is on
// timeline 1, and its ids are the sequence's values, as before.
const pgTimelineBase = `((('x' || left(pg_walfile_name(pg_current_wal_lsn()), 8))::bit(32)::bigint - 1) << 44)`

// pgInsertArrays inserts a whole batch in one statement: one array per
// column, in insertion order (the function scan's ordinality is that
// order, so ORDER BY ord costs no sort), and the rank of each row, which
// picks its id. The ids are drawn over unnest of the ranks rather than a
// generate_series of their count: PostgreSQL's estimate for the latter
// made every generic plan look dearer, so the statement was planned
// again at every execution (pg_prepared_statements: 30 custom plans of
// 30), ~30 µs a batch. The optional columns come as empty strings and zeros
// rather than NULLs, so the arrays have no NULLs. It is a plain INSERT: a
// delivery key already pending fails the whole statement
// (unique_violation), and the batch is then sent again as
// pgInsertArraysSkipDuplicates. Duplicates are rare (a provider retrying
// a delivery that is still pending), and ON CONFLICT's speculative
// insertion costs on every row: BenchmarkInsertPayloadsPostgres ran 7%
// faster at 16 rows and 15-25% at 64 without it.
var pgInsertArrays = `
INSERT INTO silo_webhook_payload (id, mailbox_name, provider, destination_type, region_name, integration_id,
	callback_url, request_method, request_path, request_headers, request_body, delivery_key)
SELECT (` + fmt.Sprintf(pgBatchIDs, "unnest($12::int4[])") + `)[rank],
	mailbox_name, nullif(provider, ''), destination_type, region_name, nullif(integration_id, 0),
	nullif(callback_url, ''), request_method, request_path, request_headers, request_body, nullif(delivery_key, '')
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
	$7::text[], $8::text[], $9::text[], $10::bytea[], $11::text[], $12::int4[])
	WITH ORDINALITY AS t(mailbox_name, provider, destination_type, region_name, integration_id, callback_url,
		request_method, request_path, request_headers, request_body, delivery_key, rank, ord)
ORDER BY ord`

// pgInsertReturning ends both insert statements.
const pgInsertReturning = `
RETURNING id, mailbox_name, coalesce(delivery_key, '')`

// pgInsertArraysSkipDuplicates is pgInsertArrays that skips the rows whose
// delivery key is pending instead of failing.
var pgInsertArraysSkipDuplicates = pgInsertArrays + `
ON CONFLICT (mailbox_name, delivery_key) WHERE delivery_key IS NOT NULL DO NOTHING` + pgInsertReturning

// Names of the statements prepared on pooled connections; the version
// keeps a later release's different text from meeting this one's on a
// long-lived session.
const (
	pgInsertArraysName               = "silo_insert_payloads_v3"
	pgInsertArraysSkipDuplicatesName = "silo_insert_payloads_skip_duplicates_v3"
)

// binaryParams sends every parameter in binary format.
var binaryParams = []int16{1}

// pgInsertParamOIDs are the parameter types of both insert statements,
// for the unnamed statements sent when the DSN asks for no prepared
// statements: text[], text[], text[], text[], bigint[], text[], text[],
// text[], text[], bytea[], text[], integer[].
var pgInsertParamOIDs = []uint32{1009, 1009, 1009, 1009, 1016, 1009, 1009, 1009, 1009, 1001, 1009, 1007}

// insertArrays is InsertPayloads for small and medium batches. The
// parameters are encoded by arrayEncoder and the prepared statements run
// through pgconn directly (see postgres_arrays.go for why).
func (p *Postgres) insertArrays(ctx context.Context, payloads []NewPayload, plan insertPlan) ([]InsertResult, error) {
	n := len(plan.order)
	at := func(k int) *NewPayload { return &payloads[plan.order[k]] }
	e := getArrayEncoder()
	defer e.release()
	e.text(n, func(k int) string { return at(k).MailboxName })
	e.text(n, func(k int) string { return at(k).Provider })
	e.text(n, func(k int) string { return destinationOf(at(k)) })
	e.text(n, func(k int) string { return at(k).Region })
	e.int8(n, func(k int) int64 { return at(k).IntegrationID })
	e.text(n, func(k int) string { return at(k).CallbackURL })
	e.text(n, func(k int) string { return at(k).Method })
	e.text(n, func(k int) string { return at(k).Path })
	e.textAppend(n, func(b []byte, k int) []byte { return appendHeaders(b, at(k).Headers) })
	e.bytea(n, func(k int) []byte { return at(k).Body })
	e.text(n, func(k int) string { return at(k).DeliveryKey })
	e.int4(n, func(k int) int32 { return plan.rank[k] })

	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, pgErr("postgres insert payloads", err)
	}
	defer conn.Release()
	// While duplicates keep coming (a retry storm), nearly every batch
	// would fail once before its ON CONFLICT run: for a second after the
	// last duplicate, go straight to that. Measured with half the
	// deliveries repeated, in the same rounds: 8,322 requests/s against
	// 5,754 failing first, PostgreSQL CPU 42 against 52 µs per request.
	var inserted []insertedRow
	now := time.Now().UnixNano()
	if now-p.lastDuplicate.Load() < int64(time.Second) {
		inserted, err = p.execInsert(ctx, conn.Conn(), e, pgInsertArraysSkipDuplicatesName, pgInsertArraysSkipDuplicates, n)
	} else {
		inserted, err = p.execInsert(ctx, conn.Conn(), e, pgInsertArraysName, pgInsertArrays+pgInsertReturning, n)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == pgUniqueViolation {
			inserted, err = p.execInsert(ctx, conn.Conn(), e, pgInsertArraysSkipDuplicatesName, pgInsertArraysSkipDuplicates, n)
		}
	}
	if err == nil && len(inserted) < n {
		p.lastDuplicate.Store(now)
	}
	if err != nil {
		return nil, pgErr("postgres insert payloads", err)
	}
	if len(inserted) < n {
		pending, err := pendingKeys(ctx, conn, payloads)
		if err != nil {
			return nil, pgErr("postgres insert payloads", err)
		}
		inserted = append(inserted, pending...)
	}
	// A duplicate whose pending row was delivered meanwhile keeps ID 0.
	return matchInserted(payloads, inserted)
}

// pgUniqueViolation is SQLSTATE unique_violation.
const pgUniqueViolation = "23505"

// execInsert runs one of the insert statements with e's parameters,
// prepared on conn under name, and reads its RETURNING rows. When the DSN
// chose a default_query_exec_mode other than cache_statement (PgBouncer
// in transaction mode, say), the statement goes unnamed instead, as pgx's
// own would. Errors come back as PostgreSQL or pgconn gave them, so the
// caller can tell a unique violation.
func (p *Postgres) execInsert(ctx context.Context, conn *pgx.Conn, e *arrayEncoder, name, sql string, n int) ([]insertedRow, error) {
	params := e.values()
	var rr *pgconn.ResultReader
	if p.prepared {
		sd, err := conn.Prepare(ctx, name, sql)
		if err != nil {
			return nil, err
		}
		loan := e.lendBind(conn.PgConn(), name, params)
		defer e.returnBind(conn.PgConn(), loan)
		// With the statement's description the result columns are
		// known: no Describe message, and no RowDescription to read back.
		rr = conn.PgConn().ExecStatement(ctx, sd, params, binaryParams, nil)
	} else {
		rr = conn.PgConn().ExecParams(ctx, sql, params, pgInsertParamOIDs, binaryParams, nil)
	}
	inserted := make([]insertedRow, 0, n)
	var rowErr error
	for rr.NextRow() {
		v := rr.Values()
		if len(v) != 3 {
			rowErr = fmt.Errorf("insert returned %d columns, want 3", len(v))
			continue
		}
		id, err := strconv.ParseInt(string(v[0]), 10, 64)
		if err != nil && rowErr == nil {
			rowErr = fmt.Errorf("insert returned id %q: %w", v[0], err)
		}
		inserted = append(inserted, insertedRow{id: id, mailbox: string(v[1]), key: string(v[2]), inserted: true})
	}
	if _, err := rr.Close(); err != nil {
		return nil, err
	}
	return inserted, rowErr
}

// collectInserted reads the RETURNING rows of an insert.
func collectInserted(rows pgx.Rows) ([]insertedRow, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (insertedRow, error) {
		ir := insertedRow{inserted: true}
		return ir, r.Scan(&ir.id, &ir.mailbox, &ir.key)
	})
}

// pgPendingKeys reads the ids of the pending rows holding keys, one index
// probe each.
const pgPendingKeys = `
SELECT k.m, k.d, (SELECT p.id FROM silo_webhook_payload p WHERE p.mailbox_name = k.m AND p.delivery_key = k.d)
FROM unnest($1::text[], $2::text[]) AS k(m, d)`

// pendingKeys reads, after an insert skipped some keyed payloads, the ids
// of the pending rows holding their keys (0 for a row delivered since).
func pendingKeys(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, payloads []NewPayload) ([]insertedRow, error) {
	var ms, ks []string
	for i := range payloads {
		if payloads[i].DeliveryKey != "" {
			ms, ks = append(ms, payloads[i].MailboxName), append(ks, payloads[i].DeliveryKey)
		}
	}
	rows, err := q.Query(ctx, pgPendingKeys, ms, ks)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (insertedRow, error) {
		var ir insertedRow
		var id *int64
		err := r.Scan(&ir.mailbox, &ir.key, &id)
		if id != nil {
			ir.id = *id
		}
		return ir, err
	})
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
// payload of a key being the one inserted. A duplicate whose pending row
// is not among rows keeps ID 0.
func matchInserted(payloads []NewPayload, rows []insertedRow) ([]InsertResult, error) {
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
	for i := range payloads {
		pl := &payloads[i]
		if pl.DeliveryKey == "" {
			if len(unkeyed) == 0 {
				return nil, fmt.Errorf("insert payloads: fewer rows inserted than payloads without delivery key")
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
