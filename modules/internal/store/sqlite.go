package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// SQLite is the embedded engine for a single instance. Writes go through
// one connection (database/sql queues writers in Go, honouring each
// caller's ctx), so concurrent writers of this process never meet
// SQLITE_BUSY; reads use a small pool of read-only connections, which WAL
// lets run beside the writer. Every transaction on the writer is BEGIN
// IMMEDIATE, so a second process on the same file (or a second SQLite
// value on it during a config reload) waits on busy_timeout instead of
// failing a lock upgrade. synchronous=FULL makes each commit durable.
//
// Timestamps are INTEGER unix microseconds, UTC.
type SQLite struct {
	path   string
	writer *sql.DB
	reader *sql.DB
}

const (
	sqliteBusyTimeout = 10 * time.Second
	sqliteReaders     = 4
	sqliteOpenTimeout = 5 * time.Second
)

// OpenSQLite opens (creating it and its parent directories if needed) the
// database at path. It opens one connection to check the file is usable;
// tables are created by Migrate.
func OpenSQLite(path string) (*SQLite, error) {
	if path == "" || strings.ContainsRune(path, '?') || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: invalid database path %q", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	wq := url.Values{"_pragma": q["_pragma"], "_txlock": {"immediate"}}
	writer, err := sql.Open("sqlite", path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)

	rq := url.Values{"_pragma": {fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()), "query_only(1)"}}
	reader, err := sql.Open("sqlite", path+"?"+rq.Encode())
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	reader.SetMaxOpenConns(sqliteReaders)
	reader.SetMaxIdleConns(sqliteReaders)

	s := &SQLite{path: path, writer: writer, reader: reader}
	ctx, cancel := context.WithTimeout(context.Background(), sqliteOpenTimeout)
	defer cancel()
	// The writer's first connection switches the file to WAL before any
	// reader opens it.
	if err := writer.PingContext(ctx); err != nil {
		s.Close()
		return nil, sqliteErr("sqlite open "+path, err)
	}
	return s, nil
}

// Engine does what Postgres.Engine does.
func (s *SQLite) Engine() string { return "sqlite" }

// Path is the database file.
func (s *SQLite) Path() string { return s.path }

// Close does what Postgres.Close does.
func (s *SQLite) Close() {
	_ = s.reader.Close()
	_ = s.writer.Close()
}

// Ping does what Postgres.Ping does.
func (s *SQLite) Ping(ctx context.Context) error {
	return sqliteErr("sqlite ping", s.reader.PingContext(ctx))
}

// write runs fn in a BEGIN IMMEDIATE transaction on the writer connection.
func (s *SQLite) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return sqliteErr(op, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return sqliteErr(op, err)
	}
	return sqliteErr(op, tx.Commit())
}

// Migrate does what Postgres.Migrate does. The writer's BEGIN
// IMMEDIATE serialises concurrent Migrate calls, in this process and in
// any other.
func (s *SQLite) Migrate(ctx context.Context) error {
	migs, err := migrationsFor("sqlite")
	if err != nil {
		return err
	}
	return s.write(ctx, "sqlite migrate", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS silo_schema_migrations (
			version    INTEGER PRIMARY KEY,
			applied_at INTEGER NOT NULL)`); err != nil {
			return err
		}
		applied := map[int]bool{}
		rows, err := tx.QueryContext(ctx, `SELECT version FROM silo_schema_migrations`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return err
			}
			applied[v] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, m := range migs {
			if applied[m.version] {
				continue
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO silo_schema_migrations (version, applied_at) VALUES (?, ?)`,
				m.version, time.Now().UnixMicro()); err != nil {
				return err
			}
		}
		return nil
	})
}

// MigrateDirectory creates the Sentry directory tables that are missing
// (see Postgres.MigrateDirectory).
func (s *SQLite) MigrateDirectory(ctx context.Context) error {
	dirSQL, err := directorySQL("sqlite")
	if err != nil {
		return err
	}
	return s.write(ctx, "sqlite directory tables", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, dirSQL)
		return err
	})
}

// MissingDirectoryTables lists the directory tables the database does not
// have, in DirectoryTables order.
func (s *SQLite) MissingDirectoryTables(ctx context.Context) ([]string, error) {
	var missing []string
	for _, t := range DirectoryTables {
		var n int
		err := s.reader.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, t).Scan(&n)
		if err != nil {
			return nil, sqliteErr("sqlite directory tables", err)
		}
		if n == 0 {
			missing = append(missing, t)
		}
	}
	return missing, nil
}

// Where names the database file.
func (s *SQLite) Where() string { return "SQLite file " + strconv.Quote(s.path) }

// micros and fromMicros convert timestamps to and from the stored form.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

// isNoRows reports a lookup that found nothing.
func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
