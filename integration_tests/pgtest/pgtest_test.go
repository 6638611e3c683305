package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestDSNGivesAnEmptyDatabase(t *testing.T) {
	dsn := DSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("new database has %d tables", n)
	}
	if DSN(t) == dsn {
		t.Fatal("two calls gave the same database")
	}
}

func TestClusterStopStart(t *testing.T) {
	c := NewCluster(t, Options{})
	dsn := c.DSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ping := func() error {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	}
	if err := ping(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := ping(); err == nil {
		t.Fatal("connected to a stopped cluster")
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := ping(); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

// A synchronous standby has every commit the primary acknowledged; once
// the primary is killed and the standby promoted, it takes writes.
func TestStandbyPromoteAfterKill(t *testing.T) {
	for _, sync := range []bool{true, false} {
		t.Run(map[bool]string{true: "synchronous", false: "asynchronous"}[sync], func(t *testing.T) {
			primary := NewCluster(t, Options{})
			standby := primary.NewStandby(t, StandbyOptions{Synchronous: sync})
			dsn := primary.DSN(t)
			db := DatabaseName(t, dsn)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			conn.Close(ctx)
			if err := primary.WaitReplayed(standby); err != nil {
				t.Fatal(err)
			}
			if err := primary.Kill(); err != nil {
				t.Fatal(err)
			}
			if _, err := pgx.Connect(ctx, dsn); err == nil {
				t.Fatal("connected to a killed primary")
			}
			if err := standby.Promote(); err != nil {
				t.Fatal(err)
			}
			sc, err := pgx.Connect(ctx, standby.DatabaseURL(db))
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close(ctx)
			if _, err := sc.Exec(ctx, "INSERT INTO t VALUES (2)"); err != nil {
				t.Fatalf("promoted standby refuses writes: %v", err)
			}
			var n int
			if err := sc.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 2 {
				t.Fatalf("promoted standby has %d rows, want 2", n)
			}
		})
	}
}

// A paused standby answers reads as of the pause.
func TestStandbyPauseReplay(t *testing.T) {
	primary := NewCluster(t, Options{})
	standby := primary.NewStandby(t, StandbyOptions{})
	dsn := primary.DSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE t (v int)"); err != nil {
		t.Fatal(err)
	}
	if err := primary.WaitReplayed(standby); err != nil {
		t.Fatal(err)
	}
	if err := standby.PauseReplay(); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	sc, err := pgx.Connect(ctx, standby.DatabaseURL(DatabaseName(t, dsn)))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(ctx)
	count := func() int {
		var n int
		if err := sc.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("paused standby sees %d rows, want 0", n)
	}
	if err := standby.ResumeReplay(); err != nil {
		t.Fatal(err)
	}
	if err := primary.WaitReplayed(standby); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("resumed standby sees %d rows, want 1", n)
	}
}

// PgBouncer in transaction mode passes queries through, and a session's
// state does not follow its client from one transaction to the next.
func TestPgBouncerTransactionMode(t *testing.T) {
	c := NewCluster(t, Options{})
	b := NewPgBouncer(t, c, PgBouncerOptions{PoolSize: 2})
	dsn := b.DSN(t, c.DSN(t)) + "&default_query_exec_mode=exec"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var one int
	if err := conn.QueryRow(ctx, "SELECT $1::int", 1).Scan(&one); err != nil || one != 1 {
		t.Fatalf("through PgBouncer: %d, %v", one, err)
	}
	var port int
	if err := conn.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port); err != nil || port != c.Port() {
		t.Fatalf("server port %d (%v), want the cluster's %d", port, err, c.Port())
	}
}
