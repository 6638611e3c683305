package drain

import (
	"context"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
	"github.com/sentrysilo/caddy-silo/modules/internal/store/storetest"
)

func openSQLite(t *testing.T) testStore { return storetest.SQLite(t) }

func openPostgres(t *testing.T) testStore { return storetest.Postgres(t) }

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

// The database goes away under a running drainer and comes back: nothing
// is lost, the drainer picks up again by itself (wakes while the database
// was down are covered by the poll), and stopping it while the database is
// down is still bounded.
func TestDatabaseOutagePostgres(t *testing.T) {
	cluster := pgtest.NewCluster(t, pgtest.Options{})
	st, _ := storetest.PostgresAt(t, cluster.DSN(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, st)
	f.insert("jira", "us", "before", 5)
	d := f.newDrainer(f.fastConfig())
	f.run(d)
	waitFor(t, "first deliveries", 30*time.Second, func() bool { return len(f.us.requests()) == 5 })
	waitFor(t, "deleted", 30*time.Second, func() bool { return f.pending() == 0 })

	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	d.Wake("jira:us:before", "jira:us:nothing")
	f.waitScans(d, 5) // polls and claims fail meanwhile
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	f.insert("jira", "us", "after", 5) // no Wake: the poll must find them
	waitFor(t, "deliveries after the outage", 60*time.Second, func() bool { return len(f.us.requests()) == 10 })
	waitFor(t, "deleted", 30*time.Second, func() bool { return f.pending() == 0 })

	// Stopping while the database is down returns within a bound.
	f.insert("jira", "us", "last", 1)
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	stopCtx, stopCancel := context.WithCancel(context.Background())
	d2 := f.newDrainer(f.fastConfig())
	done := make(chan struct{})
	go func() { defer close(done); d2.Run(stopCtx) }()
	f.waitScans(d2, 2) // running, its scans failing
	t0 := time.Now()
	stopCancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return with the database down")
	}
	t.Logf("stop with the database down took %v", time.Since(t0))
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
}
