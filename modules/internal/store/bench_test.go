package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// benchBatchSizes are the group-commit batch sizes measured.
var benchBatchSizes = []int{1, 16, 64, 128, 512}

// benchSeq makes delivery keys unique across a benchmark run.
var benchSeq atomic.Int64

// benchBatch is n GitHub-like webhooks: 2 KiB bodies, a dozen headers, a
// delivery key each, spread over 8 mailboxes.
func benchBatch(n int) []store.NewPayload {
	body := []byte(`{"action":"opened","pull_request":{"body":"` + strings.Repeat("x", 2000) + `"}}`)
	out := make([]store.NewPayload, n)
	for i := range out {
		seq := benchSeq.Add(1)
		out[i] = store.NewPayload{
			MailboxName:   fmt.Sprintf("github:us:%d", seq%8),
			Provider:      "github",
			Region:        "us",
			IntegrationID: 42,
			Method:        "POST",
			Path:          "/extensions/github/webhook/",
			Headers: http.Header{
				"Content-Type":        {"application/json"},
				"User-Agent":          {"GitHub-Hookshot/abc123"},
				"X-Github-Delivery":   {fmt.Sprint("d-", seq)},
				"X-Github-Event":      {"pull_request"},
				"X-Github-Hook-Id":    {"123456"},
				"X-Hub-Signature":     {"sha1=0123456789abcdef0123456789abcdef01234567"},
				"X-Hub-Signature-256": {"sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
				"X-Forwarded-For":     {"140.82.115.1"},
				"Accept":              {"*/*"},
				"Content-Length":      {fmt.Sprint(len(body))},
			},
			Body:        body,
			DeliveryKey: fmt.Sprint("d-", seq),
		}
	}
	return out
}

func benchInsert(b *testing.B, insert func(ctx context.Context, ps []store.NewPayload) error) {
	for _, n := range benchBatchSizes {
		b.Run(fmt.Sprint("batch=", n), func(b *testing.B) {
			ctx := context.Background()
			batches := make([][]store.NewPayload, 0, 64)
			for range 64 {
				batches = append(batches, benchBatch(n))
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				ps := batches[i%len(batches)]
				if i >= len(batches) {
					// Fresh keys, so the benchmark measures inserts, not
					// de-duplication hits.
					b.StopTimer()
					ps = benchBatch(n)
					b.StartTimer()
				}
				if err := insert(ctx, ps); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

func BenchmarkInsertPayloadsSQLite(b *testing.B) {
	s := openSQLite(b, filepath.Join(b.TempDir(), "silo.db"), true)
	benchInsert(b, func(ctx context.Context, ps []store.NewPayload) error {
		_, err := s.InsertPayloads(ctx, ps)
		return err
	})
}

// BenchmarkInsertPayloadsPostgres measures the store's insert on a
// cluster with fsync off (a multi-row INSERT from unnest'ed arrays below
// 256 rows, COPY from there), next to two alternatives: one statement per
// row plus NOTIFY in a pgx.Batch (one round trip), and a plain COPY into a
// temporary table followed by INSERT ... SELECT.
func BenchmarkInsertPayloadsPostgres(b *testing.B) {
	s, pool := openPostgres(b, pgtest.DSN(b), true)
	b.Run("store", func(b *testing.B) {
		benchInsert(b, func(ctx context.Context, ps []store.NewPayload) error {
			_, err := s.InsertPayloads(ctx, ps)
			return err
		})
	})
	b.Run("batch_per_row", func(b *testing.B) {
		benchInsert(b, func(ctx context.Context, ps []store.NewPayload) error {
			return insertPerRowBatch(ctx, pool, ps)
		})
	})
	b.Run("copy_temp", func(b *testing.B) {
		benchInsert(b, func(ctx context.Context, ps []store.NewPayload) error {
			return insertCopyTemp(ctx, pool, ps)
		})
	})
}

// BenchmarkInsertPayloadsPostgresDurable is the store's insert on a
// cluster with fsync on: what one group commit costs for real.
func BenchmarkInsertPayloadsPostgresDurable(b *testing.B) {
	c := pgtest.NewCluster(b, pgtest.Options{Durable: true})
	s, _ := openPostgres(b, c.DSN(b), true)
	benchInsert(b, func(ctx context.Context, ps []store.NewPayload) error {
		_, err := s.InsertPayloads(ctx, ps)
		return err
	})
}

func headersJSON(h http.Header) string {
	b, _ := json.Marshal(h)
	return string(b)
}

// insertPerRowBatch is the pgx.Batch alternative: per row, one statement
// that inserts or finds the pending duplicate, then the NOTIFY, pipelined
// in one implicit transaction.
func insertPerRowBatch(ctx context.Context, pool *pgxpool.Pool, ps []store.NewPayload) error {
	batch := &pgx.Batch{}
	var mailboxes []string
	seen := map[string]bool{}
	for _, p := range ps {
		batch.Queue(`WITH ins AS (
			INSERT INTO silo_webhook_payload (mailbox_name, provider, region_name, integration_id,
				request_method, request_path, request_headers, request_body, delivery_key)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (mailbox_name, delivery_key) WHERE delivery_key IS NOT NULL DO NOTHING
			RETURNING id)
			SELECT id, false FROM ins
			UNION ALL
			SELECT id, true FROM silo_webhook_payload WHERE $9::text IS NOT NULL AND mailbox_name = $1 AND delivery_key = $9
				AND NOT EXISTS (SELECT 1 FROM ins)`,
			p.MailboxName, p.Provider, p.Region, p.IntegrationID, p.Method, p.Path, headersJSON(p.Headers), p.Body, p.DeliveryKey)
		if !seen[p.MailboxName] {
			seen[p.MailboxName] = true
			mailboxes = append(mailboxes, p.MailboxName)
		}
	}
	batch.Queue(`SELECT pg_notify('silo_mailbox', m) FROM unnest($1::text[]) AS m`, mailboxes)
	br := pool.SendBatch(ctx, batch)
	for range ps {
		var id int64
		var dup bool
		if err := br.QueryRow().Scan(&id, &dup); err != nil {
			br.Close()
			return err
		}
	}
	return br.Close()
}

// insertCopyTemp is the COPY alternative: COPY the batch into a temporary
// table, then INSERT ... SELECT from it, in an explicit transaction.
func insertCopyTemp(ctx context.Context, pool *pgxpool.Pool, ps []store.NewPayload) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS silo_payload_in (
			ord int, mailbox_name text, provider text, region_name text, integration_id bigint, request_method text,
			request_path text, request_headers text, request_body bytea, delivery_key text) ON COMMIT DELETE ROWS`); err != nil {
			return err
		}
		rows := make([][]any, len(ps))
		var mailboxes []string
		for i, p := range ps {
			rows[i] = []any{i, p.MailboxName, p.Provider, p.Region, p.IntegrationID, p.Method, p.Path, headersJSON(p.Headers), p.Body, p.DeliveryKey}
			mailboxes = append(mailboxes, p.MailboxName)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"silo_payload_in"}, []string{"ord", "mailbox_name", "provider", "region_name",
			"integration_id", "request_method", "request_path", "request_headers", "request_body", "delivery_key"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		r, err := tx.Query(ctx, `INSERT INTO silo_webhook_payload (mailbox_name, provider, region_name, integration_id,
			request_method, request_path, request_headers, request_body, delivery_key)
			SELECT mailbox_name, provider, region_name, integration_id, request_method, request_path, request_headers, request_body, delivery_key
			FROM silo_payload_in ORDER BY ord
			ON CONFLICT (mailbox_name, delivery_key) WHERE delivery_key IS NOT NULL DO NOTHING RETURNING id`)
		if err != nil {
			return err
		}
		if _, err := pgx.CollectRows(r, pgx.RowTo[int64]); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify('silo_mailbox', m) FROM (SELECT DISTINCT unnest($1::text[]) AS m) d`, mailboxes)
		return err
	})
}

// BenchmarkInsertPayloadsPostgresInterleaved runs the insert strategies in
// turn inside one loop and reports each one's median time per batch, so a
// busy machine slows all of them alike: this is the benchmark that picks
// the strategy (the sequential ones above drift with the load).
func BenchmarkInsertPayloadsPostgresInterleaved(b *testing.B) {
	s, pool := openPostgres(b, pgtest.DSN(b), true)
	strategies := []struct {
		name   string
		insert func(ctx context.Context, ps []store.NewPayload) error
	}{
		{"store", func(ctx context.Context, ps []store.NewPayload) error {
			_, err := s.InsertPayloads(ctx, ps)
			return err
		}},
		{"batch_per_row", func(ctx context.Context, ps []store.NewPayload) error { return insertPerRowBatch(ctx, pool, ps) }},
		{"copy_temp", func(ctx context.Context, ps []store.NewPayload) error { return insertCopyTemp(ctx, pool, ps) }},
	}
	for _, n := range benchBatchSizes {
		b.Run(fmt.Sprint("batch=", n), func(b *testing.B) {
			ctx := context.Background()
			times := make([][]time.Duration, len(strategies))
			for i := 0; b.Loop(); i++ {
				for k, st := range strategies {
					k = (k + i) % len(strategies) // rotate who goes first
					st = strategies[k]
					b.StopTimer()
					ps := benchBatch(n)
					b.StartTimer()
					start := time.Now()
					if err := st.insert(ctx, ps); err != nil {
						b.Fatal(err)
					}
					times[k] = append(times[k], time.Since(start))
				}
			}
			for k, st := range strategies {
				slices.Sort(times[k])
				b.ReportMetric(float64(times[k][len(times[k])/2].Microseconds()), st.name+"_µs/batch")
			}
		})
	}
}
