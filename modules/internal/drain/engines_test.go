package drain

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "silo.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func openPostgres(t *testing.T) store.Store {
	t.Helper()
	cfg, err := store.PostgresPoolConfig(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := store.NewPostgres(pool)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDrainerSQLite(t *testing.T) { runSuite(t, openSQLite) }

func TestDrainerPostgres(t *testing.T) { runSuite(t, openPostgres) }

// Two drainers on one PostgreSQL database: 10,000 payloads over 100
// mailboxes, each delivered exactly once, in order within its mailbox.
func TestLeaseExclusivityPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 payloads; left out under -short")
	}
	exclusiveRun(t, openPostgres(t), 100, 100)
}
