// Package storetest opens migrated storage engines for the tests of the
// packages that use them (drain, admin, mailbox): a SQLite file in the
// test's temporary directory, or a database of a throwaway PostgreSQL
// cluster (integration_tests/pgtest). One home for that set-up, so every
// suite runs on the engines as the app opens them.
package storetest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// migrateTimeout bounds the migrations of a fresh database: a few
// hundred milliseconds here, 30 s leaves room for a loaded machine.
const migrateTimeout = 30 * time.Second

// SQLite opens a migrated SQLite file, closed when the test ends.
func SQLite(t testing.TB) *store.SQLite {
	t.Helper()
	s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "silo.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	migrate(t, s.Migrate)
	return s
}

// Postgres opens a migrated database of a throwaway PostgreSQL cluster,
// with the pool settings the app uses, closed when the test ends.
func Postgres(t testing.TB) *store.Postgres {
	t.Helper()
	s, _ := PostgresAt(t, pgtest.DSN(t))
	migrate(t, s.Migrate)
	return s
}

// PostgresAt opens the database at dsn with the pool settings the app
// uses, not migrated, and its pool for the test's own statements; the
// pool is closed when the test ends.
func PostgresAt(t testing.TB, dsn string) (*store.Postgres, *pgxpool.Pool) {
	t.Helper()
	cfg, err := store.PostgresPoolConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return store.NewPostgres(pool), pool
}

func migrate(t testing.TB, m func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	if err := m(ctx); err != nil {
		t.Fatal(err)
	}
}
