package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// unavailable wraps err with ErrUnavailable.
func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

// pgErr classifies a pgx error. A PostgreSQL error of a class that means
// the server cannot do any work (connection exception, insufficient
// resources, operator intervention, system error, read-only standby) is
// unavailability, and so is a prepared statement that is not on the
// connection (a pooler in transaction mode under a DSN that prepares
// statements: the error says what to change); any other server error is
// a real failure of the statement. Every error that is not a server answer (connect, network,
// EOF, timeouts) is unavailability too, except a caller's cancellation.
func pgErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if passThrough(err) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case len(pe.Code) >= 2 && (pe.Code[:2] == "08" || pe.Code[:2] == "53" || pe.Code[:2] == "58"),
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // shutdown, crash, cannot connect now
			pe.Code == "25006", // read_only_sql_transaction: we hit a standby after failover
			pe.Code == "57014": // query_canceled (statement_timeout)
			return unavailable(op, err)
		case pe.Code == pgDuplicatePreparedStatement, pe.Code == pgUnknownPreparedStatement:
			// Our statements are prepared once per connection. These two
			// mean the connection is not ours alone: a pooler in
			// transaction mode hands each transaction whichever server
			// connection is free, and the statement is on another one.
			return fmt.Errorf("%s: %w: %w (%s)", op, ErrUnavailable, err, poolerHint)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	var scan pgx.ScanArgError
	if errors.Is(err, context.Canceled) || errors.As(err, &scan) || strings.Contains(err.Error(), "failed to encode args") {
		// The caller gave up, or a column did not fit: not an outage.
		return fmt.Errorf("%s: %w", op, err)
	}
	return unavailable(op, err)
}

// SQLSTATEs of prepared statements that are not where pgx left them.
const (
	pgDuplicatePreparedStatement = "42P05"
	pgUnknownPreparedStatement   = "26000"
)

// poolerHint is the fix for prepared statements lost to a pooler.
const poolerHint = "the DSN goes through a pooler in transaction mode, such as PgBouncer: " +
	"add default_query_exec_mode=exec to it so that no statement outlives its transaction"

// sqliteErr classifies a modernc.org/sqlite error: a busy or locked
// database (after busy_timeout), I/O errors, a full disk, a file that
// cannot be opened and a closed handle are unavailability.
func sqliteErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if passThrough(err) {
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
			sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_PROTOCOL:
			return unavailable(op, err)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	if errors.Is(err, sql.ErrConnDone) || errors.Is(err, context.DeadlineExceeded) || err.Error() == "sql: database is closed" {
		return unavailable(op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// passThrough reports errors that are already classified.
func passThrough(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) ||
		errors.Is(err, ErrInvalidPayload) || errors.Is(err, directory.ErrNotFound)
}
