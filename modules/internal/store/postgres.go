package store

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the production engine: any number of Caddy instances share
// one PostgreSQL database. Timestamps are timestamptz.
type Postgres struct {
	pool *pgxpool.Pool
	// where names the database for operators: its name and host,
	// never its password (see Where).
	where string
	// lastDuplicate is when (unix ns) a batch last met a pending delivery
	// key; see insertArrays.
	lastDuplicate atomic.Int64
}

// NewPostgres wraps a pool the caller owns (the app keeps it in a
// caddy.UsagePool so a reload reuses it). Postgres never closes it.
func NewPostgres(pool *pgxpool.Pool) *Postgres {
	return &Postgres{pool: pool, where: describeDatabase(pool.Config().ConnConfig)}
}

// describeDatabase names a database by its name, host and port, which is
// what an operator needs to tell the storage database from Sentry's
// control database; the DSN itself may hold a password.
func describeDatabase(cfg *pgx.ConnConfig) string {
	where := fmt.Sprintf("database %q on %s", cfg.Database, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	if n := len(cfg.Fallbacks); n > 0 {
		where += fmt.Sprintf(" (and %d more hosts)", n)
	}
	return where
}

// Where names the database (name, host and port; never the password).
func (p *Postgres) Where() string { return p.where }

// Pool settings PostgresPoolConfig applies when the DSN does not set them.
const (
	PostgresApplicationName = "caddy-silo"
	postgresConnectTimeout  = 5 * time.Second
	postgresHealthCheck     = 15 * time.Second
)

// PostgresPoolConfig parses a pgx DSN (URL or key=value) and fills in the
// settings caddy-silo wants unless the DSN sets them: application_name
// caddy-silo (so DBAs can tell our sessions apart), pool_max_conns
// max(16, 4*GOMAXPROCS) (group commit, 32 drain workers and the
// credential proxy share it), a 5s connect timeout (a dead database fails
// capture fast with 503 rather than hanging) and a 15s health check. It
// does no network work.
func PostgresPoolConfig(dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error can quote the DSN, password included.
		return nil, fmt.Errorf("postgres: invalid DSN")
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = PostgresApplicationName
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = int32(max(16, 4*runtime.GOMAXPROCS(0)))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = postgresConnectTimeout
	}
	if !strings.Contains(dsn, "pool_health_check_period") {
		cfg.HealthCheckPeriod = postgresHealthCheck
	}
	return cfg, nil
}

// Engine is "postgres" or "sqlite".
func (p *Postgres) Engine() string { return "postgres" }

// Close It does not close the pool, which belongs to
// the caller (see NewPostgres).
func (p *Postgres) Close() {}

// Ping checks that the database answers.
func (p *Postgres) Ping(ctx context.Context) error {
	return pgErr("postgres ping", p.pool.Ping(ctx))
}

// migrationLockKey is the pg_advisory_xact_lock key that serialises
// Migrate across instances ("silo" in ASCII).
const migrationLockKey = 0x73696c6f

// Migrate applies the embedded migrations of our own tables that are not
// applied yet (the directory's are MigrateDirectory's). Safe to run from
// several instances at once: everything runs in one transaction holding a
// transaction-level advisory lock, so instances starting together apply
// each migration exactly once and a failed migration leaves nothing
// behind (PostgreSQL DDL is transactional).
func (p *Postgres) Migrate(ctx context.Context) error {
	migs, err := migrationsFor("postgres")
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLockKey)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS silo_schema_migrations (
			version    integer     PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		applied := map[int]bool{}
		rows, err := tx.Query(ctx, `SELECT version FROM silo_schema_migrations`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				return err
			}
			applied[v] = true
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, m := range migs {
			if applied[m.version] {
				continue
			}
			// No arguments: the simple protocol runs the whole script.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO silo_schema_migrations (version) VALUES ($1)`, m.version); err != nil {
				return err
			}
		}
		return nil
	})
	return pgErr("postgres migrate", err)
}

// MigrateDirectory creates the Sentry directory tables that are missing,
// for a database that plays Sentry's control database too (one database
// for everything: tests, demos, a single-region setup). It is never run
// on a real Sentry control database (directory_dsn), whose tables belong
// to Sentry's migrations.
func (p *Postgres) MigrateDirectory(ctx context.Context) error {
	dirSQL, err := directorySQL("postgres")
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLockKey)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, dirSQL)
		return err
	})
	return pgErr("postgres directory tables", err)
}

// MissingDirectoryTables lists the directory tables the database does not
// have (as search_path resolves them), in DirectoryTables order.
func (p *Postgres) MissingDirectoryTables(ctx context.Context) ([]string, error) {
	rows, err := p.pool.Query(ctx, `SELECT t FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n)
		WHERE to_regclass(quote_ident(t)) IS NULL ORDER BY n`, DirectoryTables)
	if err != nil {
		return nil, pgErr("postgres directory tables", err)
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return missing, pgErr("postgres directory tables", err)
}

// notifyChannel is the LISTEN/NOTIFY channel; the payload is a mailbox.
const notifyChannel = "silo_mailbox"

// Notify wakes the other instances' drainers for these mailboxes: one
// statement, one notification per mailbox, no WAL and so no fsync.
// InsertPayloads does not notify: a NOTIFY inside the insert's transaction
// would hold PostgreSQL's global notify lock across the commit's fsync and
// serialise every capture commit behind it. Callers notify after the
// commit instead (coalesced; a lost notification only costs the poll
// interval).
func (p *Postgres) Notify(ctx context.Context, mailboxes []string) error {
	if len(mailboxes) == 0 {
		return nil
	}
	_, err := p.pool.Exec(ctx, `SELECT pg_notify('`+notifyChannel+`', m) FROM unnest($1::text[]) AS m`, mailboxes)
	return pgErr("postgres notify", err)
}

// Listen calls fn with each notified mailbox name until ctx ends, then
// returns ctx.Err(), on a connection taken from the pool for as long as
// ctx lasts. fn runs on the listening goroutine and must not block. A lost
// connection is re-established with backoff (100ms doubling to 5s),
// followed by fn(""): wakes may have been missed, so the caller should
// look at every mailbox.
func (p *Postgres) Listen(ctx context.Context, fn func(mailbox string)) error {
	backoff := 100 * time.Millisecond
	for first := true; ; first = false {
		listening := p.listenOnce(ctx, fn, !first)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if listening {
			backoff = 100 * time.Millisecond
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// listenOnce listens on one connection until it fails or ctx ends. It
// reports whether LISTEN had succeeded.
func (p *Postgres) listenOnce(ctx context.Context, fn func(string), reconnected bool) (listening bool) {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return false
	}
	defer func() {
		// Hand the connection back clean: a pooled connection that still
		// LISTENs would collect notifications nobody reads. If it cannot
		// be cleaned (it broke, or ctx ended mid-read), close it instead.
		raw := conn.Conn()
		if !raw.IsClosed() {
			uctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, uerr := raw.Exec(uctx, "UNLISTEN *")
			cancel()
			if uerr != nil {
				cctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = conn.Hijack().Close(cctx)
				cancel()
				return
			}
		}
		conn.Release()
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return false
	}
	if reconnected {
		fn("")
	}
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return true
		}
		if n.Channel == notifyChannel {
			fn(n.Payload)
		}
	}
}
