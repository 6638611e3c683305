package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

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

// InsertPayloads implements Store. A batch below pgCopyThreshold rows is
// one multi-row INSERT from arrays (insertArrays): one round trip, one
// implicit transaction. From pgCopyThreshold rows it goes through COPY
// (insertCopy). BenchmarkInsertPayloadsPostgresInterleaved chose both
// against one INSERT per row in a pgx.Batch: per-row is ~20% faster for a
// single row, the arrays ~20-40% faster from 16 to 128 rows, COPY ~40%
// faster at 512 rows. Either way the ids of the pending rows that keyed
// payloads duplicate are read only when there are duplicates.
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

// pgInsertArrays inserts a whole batch in one statement: one array per
// column, in batch order (ids follow it). The optional columns come as
// empty strings and zeros rather than NULLs, so the arrays have no NULLs.
// It is a plain INSERT: a delivery key already pending fails the whole
// statement (unique_violation), and the batch is then sent again as
// pgInsertArraysSkipDuplicates. Duplicates are rare (a provider retrying
// a delivery that is still pending), and ON CONFLICT's speculative
// insertion costs on every row: BenchmarkInsertPayloadsPostgres ran 7%
// faster at 16 rows and 15-25% at 64 without it.
const pgInsertArrays = `
INSERT INTO silo_webhook_payload (mailbox_name, provider, destination_type, region_name, integration_id,
	callback_url, request_method, request_path, request_headers, request_body, delivery_key)
SELECT mailbox_name, nullif(provider, ''), destination_type, region_name, nullif(integration_id, 0),
	nullif(callback_url, ''), request_method, request_path, request_headers, request_body, nullif(delivery_key, '')
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
	$7::text[], $8::text[], $9::text[], $10::bytea[], $11::text[])
	WITH ORDINALITY AS t(mailbox_name, provider, destination_type, region_name, integration_id, callback_url,
		request_method, request_path, request_headers, request_body, delivery_key, ord)
ORDER BY ord`

// pgInsertReturning ends both insert statements.
const pgInsertReturning = `
RETURNING id, mailbox_name, coalesce(delivery_key, '')`

// pgInsertArraysSkipDuplicates is pgInsertArrays that skips the rows whose
// delivery key is pending (or repeated in the batch) instead of failing.
const pgInsertArraysSkipDuplicates = pgInsertArrays + `
ON CONFLICT (mailbox_name, delivery_key) WHERE delivery_key IS NOT NULL DO NOTHING` + pgInsertReturning

// Names of the statements prepared on pooled connections; the version
// keeps a later release's different text from meeting this one's on a
// long-lived session.
const (
	pgInsertArraysName               = "silo_insert_payloads_v2"
	pgInsertArraysSkipDuplicatesName = "silo_insert_payloads_skip_duplicates_v2"
)

// binaryParams sends every parameter in binary format.
var binaryParams = []int16{1}

// pgInsertParamOIDs are the parameter types of both insert statements,
// for the unnamed statements sent when the DSN asks for no prepared
// statements: text[], text[], text[], text[], bigint[], text[], text[],
// text[], text[], bytea[], text[].
var pgInsertParamOIDs = []uint32{1009, 1009, 1009, 1009, 1016, 1009, 1009, 1009, 1009, 1001, 1009}

// insertArrays is InsertPayloads for small and medium batches. The
// parameters are encoded by arrayEncoder and the prepared statements run
// through pgconn directly (see postgres_arrays.go for why).
func (p *Postgres) insertArrays(ctx context.Context, payloads []NewPayload, headers []string) ([]InsertResult, error) {
	n := len(payloads)
	e := getArrayEncoder()
	defer e.release()
	e.text(n, func(i int) string { return payloads[i].MailboxName })
	e.text(n, func(i int) string { return payloads[i].Provider })
	e.text(n, func(i int) string { return destinationOf(&payloads[i]) })
	e.text(n, func(i int) string { return payloads[i].Region })
	e.int8(n, func(i int) int64 { return payloads[i].IntegrationID })
	e.text(n, func(i int) string { return payloads[i].CallbackURL })
	e.text(n, func(i int) string { return payloads[i].Method })
	e.text(n, func(i int) string { return payloads[i].Path })
	e.text(n, func(i int) string { return headers[i] })
	e.bytea(n, func(i int) []byte { return payloads[i].Body })
	e.text(n, func(i int) string { return payloads[i].DeliveryKey })
	params := e.values()

	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, pgErr("postgres insert payloads", err)
	}
	defer conn.Release()
	inserted, err := execInsert(ctx, conn.Conn(), pgInsertArraysName, pgInsertArrays+pgInsertReturning, params, n)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == pgUniqueViolation {
		inserted, err = execInsert(ctx, conn.Conn(), pgInsertArraysSkipDuplicatesName, pgInsertArraysSkipDuplicates, params, n)
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

// execInsert runs one of the insert statements, prepared on conn under
// name, and reads its RETURNING rows. When the DSN chose a
// default_query_exec_mode other than cache_statement (PgBouncer in
// transaction mode, say), the statement goes unnamed instead, as pgx's
// own would. Errors come back as PostgreSQL or pgconn gave them, so the
// caller can tell a unique violation.
func execInsert(ctx context.Context, conn *pgx.Conn, name, sql string, params [][]byte, n int) ([]insertedRow, error) {
	var rr *pgconn.ResultReader
	if conn.Config().DefaultQueryExecMode == pgx.QueryExecModeCacheStatement {
		if _, err := conn.Prepare(ctx, name, sql); err != nil {
			return nil, err
		}
		rr = conn.PgConn().ExecPrepared(ctx, name, params, binaryParams, nil)
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
