package store

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	// listenCfg, when set, is where Listen opens its session (ListenOn).
	listenCfg *pgx.ConnConfig
	// prepared is the DSN's default_query_exec_mode being pgx's
	// cache_statement, under which the capture's insert runs as a
	// statement prepared on each connection (execInsert). Read once:
	// pgx.Conn.Config copies the whole config on every call.
	prepared bool
}

// PostgresOption tunes a Postgres.
type PostgresOption func(*Postgres)

// NewPostgres wraps a pool the caller owns (the app keeps it in a
// caddy.UsagePool so a reload reuses it). Postgres never closes it.
func NewPostgres(pool *pgxpool.Pool, opts ...PostgresOption) *Postgres {
	cfg := pool.Config().ConnConfig
	p := &Postgres{pool: pool, where: describeDatabase(cfg), prepared: cfg.DefaultQueryExecMode == pgx.QueryExecModeCacheStatement}
	for _, o := range opts {
		o(p)
	}
	return p
}

// describeDatabase names a database by its name, host and port, which is
// what an operator needs to tell the storage database from Sentry's
// control database; the DSN itself may hold a password.
func describeDatabase(cfg *pgx.ConnConfig) string {
	where := fmt.Sprintf("database %q on %s", cfg.Database, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	switch n := moreHosts(cfg); {
	case n == 1:
		where += " (and 1 more host)"
	case n > 1:
		where += fmt.Sprintf(" (and %d more hosts)", n)
	}
	return where
}

// moreHosts counts the hosts a DSN names besides its first. pgx keeps one
// fallback per host and TLS mode (sslmode=prefer tries TLS, then not), so
// the fallbacks are counted by address.
func moreHosts(cfg *pgx.ConnConfig) int {
	first := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	seen := map[string]bool{first: true}
	for _, f := range cfg.Fallbacks {
		seen[net.JoinHostPort(f.Host, strconv.Itoa(int(f.Port)))] = true
	}
	return len(seen) - 1
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
	cfg.ConnConfig.OnPgError = closeOnPgError
	return cfg, nil
}

// closeOnPgError is told of every error a server sends. Besides FATAL
// errors (pgx's own rule: the session is over), it closes a connection
// whose server answered read_only_sql_transaction: that server is a
// standby, or a primary fenced read-only during a failover, and every
// later statement on the connection would fail the same way for as long
// as the pool kept it. Closed, it is replaced by a new connection, which
// target_session_attrs sends to whichever host takes writes now.
func closeOnPgError(_ *pgconn.PgConn, pe *pgconn.PgError) bool {
	return !strings.EqualFold(pe.Severity, "FATAL") && pe.Code != pgReadOnlyTransaction
}

// pgReadOnlyTransaction is SQLSTATE read_only_sql_transaction.
const pgReadOnlyTransaction = "25006"

// Session targets: which of a DSN's hosts a connection may settle on
// (libpq's target_session_attrs).
const (
	TargetAny           = "any"
	TargetReadWrite     = "read-write"
	TargetPrimary       = "primary"
	TargetReadOnly      = "read-only"
	TargetStandby       = "standby"
	TargetPreferStandby = "prefer-standby"
)

// SessionTarget reads back the target_session_attrs a parsed config
// carries (pgx keeps only the check it implies).
func SessionTarget(cfg *pgx.ConnConfig) string {
	if cfg.ValidateConnect == nil {
		return TargetAny
	}
	at := reflect.ValueOf(cfg.ValidateConnect).Pointer()
	for name, f := range map[string]pgconn.ValidateConnectFunc{
		TargetReadWrite:     pgconn.ValidateConnectTargetSessionAttrsReadWrite,
		TargetPrimary:       pgconn.ValidateConnectTargetSessionAttrsPrimary,
		TargetReadOnly:      pgconn.ValidateConnectTargetSessionAttrsReadOnly,
		TargetStandby:       pgconn.ValidateConnectTargetSessionAttrsStandby,
		TargetPreferStandby: pgconn.ValidateConnectTargetSessionAttrsPreferStandby,
	} {
		if reflect.ValueOf(f).Pointer() == at {
			return name
		}
	}
	return "custom"
}

// RequireWritable makes cfg settle only on a server that takes writes:
// of a DSN that names several hosts (host=a,b), the first one that is not
// in recovery and not read-only, as libpq's target_session_attrs=read-write
// does. A DSN that sets no target, or "any", gets read-write: what it
// connects to is written to, and a standby could only refuse (25006). A
// DSN that asks for a standby is refused, naming the setting.
func RequireWritable(cfg *pgx.ConnConfig) error {
	switch t := SessionTarget(cfg); t {
	case TargetReadWrite, TargetPrimary:
	case TargetAny:
		cfg.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsReadWrite
	default:
		return fmt.Errorf("target_session_attrs=%s would connect to a standby, but this database is written to: use read-write (or leave it out)", t)
	}
	return nil
}

// WritableCopy is cfg settling only on a server that takes writes (see
// RequireWritable), and whether that differs from cfg: a DSN meant for
// reads (prefer-standby, a replica first in its host list) gives a second
// config for what must write, or read its own writes, on the primary.
func WritableCopy(cfg *pgxpool.Config) (*pgxpool.Config, bool) {
	switch SessionTarget(cfg.ConnConfig) {
	case TargetReadWrite, TargetPrimary:
		return cfg, false
	case TargetAny:
		if moreHosts(cfg.ConnConfig) == 0 {
			// One host: whatever it is, it is the only one.
			return cfg, false
		}
	}
	w := cfg.Copy()
	w.ConnConfig.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsReadWrite
	return w, true
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
