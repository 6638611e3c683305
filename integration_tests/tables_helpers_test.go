package integration_tests

import (
	"database/sql"
	"testing"
	"time"
)

// waitForTables waits until the instance's background migrations have
// created every one of tables, failing the test after timeout with the
// instance's log (logs may be nil).
func waitForTables(t *testing.T, db *sql.DB, timeout time.Duration, logs func() string, tables ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var err error
		for _, table := range tables {
			var n int
			if err = db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
				break
			}
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log := ""
			if logs != nil {
				log = logs()
			}
			t.Fatalf("tables %v were not created: %v\n%s", tables, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
