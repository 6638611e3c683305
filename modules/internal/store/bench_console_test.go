package store_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// consoleShapes are the backlogs the console's mailbox listing must stay
// cheap on: deep mailboxes, many mailboxes, and a mix.
var consoleShapes = []struct {
	name            string
	rows, mailboxes int
}{
	{"1M_rows_100_mailboxes", 1_000_000, 100},
	{"1M_rows_10k_mailboxes", 1_000_000, 10_000},
	{"200k_rows_100k_mailboxes", 200_000, 100_000},
}

// benchConsole measures, per shape: a page of 100 mailboxes by name (the
// loose index scan), their capped depths (at the two caps considered),
// every head for a sorted listing (in pages of 5,000, as the admin API
// reads them), and the whole-table aggregate the listing used before.
func benchConsole(b *testing.B, s consoleStore, exec func(string), fill func(rows, mailboxes int) string, analyze string) {
	for _, shape := range consoleShapes {
		b.Run(shape.name, func(b *testing.B) {
			exec(`DELETE FROM silo_webhook_payload`)
			exec(fill(shape.rows, shape.mailboxes))
			exec(analyze)
			ctx := testCtx(b)
			page, err := s.MailboxHeads(ctx, "", 100)
			if err != nil || len(page) != 100 {
				b.Fatal(len(page), err)
			}
			names := make([]string, len(page))
			for i, h := range page {
				names[i] = h.Name
			}
			b.Run("heads_page_100", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.MailboxHeads(ctx, names[49], 100); err != nil {
						b.Fatal(err)
					}
				}
			})
			for _, limit := range []int{1_000, 10_000} {
				b.Run(fmt.Sprintf("depths_100_capped_%d", limit), func(b *testing.B) {
					for b.Loop() {
						if _, err := s.MailboxDepths(ctx, names, limit); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
			b.Run("every_head", func(b *testing.B) {
				for b.Loop() {
					n, after := 0, ""
					for {
						hs, err := s.MailboxHeads(ctx, after, 5000)
						if err != nil {
							b.Fatal(err)
						}
						n += len(hs)
						if len(hs) < 5000 {
							break
						}
						after = hs[len(hs)-1].Name
					}
					if n != min(shape.mailboxes, shape.rows) {
						b.Fatalf("%d heads, want %d", n, shape.mailboxes)
					}
				}
			})
			b.Run("whole_table_aggregate", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Mailboxes(ctx, time.Now()); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("payloads_page_of_one_mailbox", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.ListPayloads(ctx, store.RowFilter{Mailbox: names[7]}, 0, 100); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func BenchmarkConsoleMailboxesPostgres(b *testing.B) {
	s, pool := openPostgres(b, pgtest.DSN(b), true)
	fill := func(rows, mailboxes int) string {
		return fmt.Sprintf(`INSERT INTO silo_webhook_payload (mailbox_name, provider, region_name, request_method,
			request_path, request_headers, request_body)
			SELECT 'github:us:' || (g %% %d), 'github', 'us', 'POST', '/', '{}', '\x00'::bytea
			FROM generate_series(1, %d) g`, mailboxes, rows)
	}
	// ANALYZE only: the pages of rows that were just stored are not all
	// visible yet, so the counts read the heap for every entry, the worst
	// case. SILO_BENCH_VACUUM=1 vacuums first, as autovacuum does to a
	// backlog that sits (the counts are then index-only).
	analyze := "ANALYZE silo_webhook_payload"
	if os.Getenv("SILO_BENCH_VACUUM") != "" {
		analyze = "VACUUM " + analyze
	}
	benchConsole(b, s, pgExec(b, pool), fill, analyze)
}

func BenchmarkConsoleMailboxesSQLite(b *testing.B) {
	path := filepath.Join(b.TempDir(), "silo.db")
	s := openSQLite(b, path, true)
	fill := func(rows, mailboxes int) string {
		return fmt.Sprintf(`WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < %d)
			INSERT INTO silo_webhook_payload (mailbox_name, provider, region_name, request_method,
				request_path, request_headers, request_body, date_added)
			SELECT 'github:us:' || (x %% %d), 'github', 'us', 'POST', '/', '{}', x'00', 0 FROM g`, rows, mailboxes)
	}
	benchConsole(b, s, sqliteExec(b, path), fill, `ANALYZE`)
}
