package store_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

// dueShapes are the backlogs DueMailboxes must stay cheap on: a deep
// backlog over few mailboxes, and very many shallow mailboxes.
var dueShapes = []struct {
	name            string
	rows, mailboxes int
}{
	{"1M_rows_100_mailboxes", 1_000_000, 100},
	{"200k_rows_100k_mailboxes", 200_000, 100_000},
}

// naiveDue is the GROUP BY scan of Sentry's scheduler (§4.4), for
// comparison.
const naiveDue = `SELECT mailbox_name FROM silo_webhook_payload
	WHERE id IN (SELECT min(id) FROM silo_webhook_payload GROUP BY mailbox_name) AND schedule_for <= $1
	ORDER BY id LIMIT 64`

func benchDue(b *testing.B, s engineStore, exec func(string), fill func(rows, mailboxes int) string, analyze string, naive func() error) {
	for _, shape := range dueShapes {
		b.Run(shape.name, func(b *testing.B) {
			exec(`DELETE FROM silo_webhook_payload`)
			exec(fill(shape.rows, shape.mailboxes))
			// Vacuumed as autovacuum would: the previous shape's deleted
			// rows would otherwise sit at the start of every index.
			exec(analyze)
			at := time.Now()
			b.Run("loose_index_scan", func(b *testing.B) {
				for b.Loop() {
					got, err := s.DueMailboxes(testCtx(b), at, 64, []string{"gitlab"})
					if err != nil || len(got) != 64 {
						b.Fatal(len(got), err)
					}
				}
			})
			if naive != nil {
				b.Run("group_by", func(b *testing.B) {
					for b.Loop() {
						if err := naive(); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

func BenchmarkDueMailboxesPostgres(b *testing.B) {
	s, pool := openPostgres(b, pgtest.DSN(b), true)
	fill := func(rows, mailboxes int) string {
		return fmt.Sprintf(`INSERT INTO silo_webhook_payload (mailbox_name, provider, region_name, request_method,
			request_path, request_headers, request_body)
			SELECT 'github:us:' || (g %% %d), 'github', 'us', 'POST', '/', '{}', '\x00'::bytea
			FROM generate_series(1, %d) g`, mailboxes, rows)
	}
	benchDue(b, s, pgExec(b, pool), fill, `VACUUM ANALYZE silo_webhook_payload`, func() error {
		_, err := pool.Exec(testCtx(b), naiveDue, time.Now())
		return err
	})
}

func BenchmarkDueMailboxesSQLite(b *testing.B) {
	path := filepath.Join(b.TempDir(), "silo.db")
	s := openSQLite(b, path, true)
	fill := func(rows, mailboxes int) string {
		return fmt.Sprintf(`WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < %d)
			INSERT INTO silo_webhook_payload (mailbox_name, provider, region_name, request_method,
				request_path, request_headers, request_body, date_added)
			SELECT 'github:us:' || (x %% %d), 'github', 'us', 'POST', '/', '{}', x'00', 0 FROM g`, rows, mailboxes)
	}
	benchDue(b, s, sqliteExec(b, path), fill, `ANALYZE`, nil)
}
