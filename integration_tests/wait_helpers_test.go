package integration_tests

import (
	"database/sql"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// waitFor polls cond (harness.Poll) until it holds, failing the test after
// timeout. It is the one wait of these tests: a test waits for what it
// needs to see, never for a fixed time.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if err := harness.Poll(timeout, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// waitForTables waits until the instance's background migrations have
// created every one of tables, failing the test after timeout with the
// last error and the instance's log (logs may be nil).
func waitForTables(t *testing.T, db *sql.DB, timeout time.Duration, logs func() string, tables ...string) {
	t.Helper()
	var err error
	if harness.Poll(timeout, func() bool {
		for _, table := range tables {
			var n int
			if err = db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
				return false
			}
		}
		return true
	}) != nil {
		log := ""
		if logs != nil {
			log = logs()
		}
		t.Fatalf("tables %v were not created within %s: %v\n%s", tables, timeout, err, log)
	}
}
