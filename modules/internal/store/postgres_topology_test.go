package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// The production topologies of issue 15 at the engine's level: a primary
// with a streaming standby behind a multi-host DSN, PgBouncer in
// transaction mode, a primary fenced read-only. The black-box versions,
// on the real binary, are in integration_tests/postgres_*_test.go.

// openPool opens a pool with PostgresPoolConfig, made writable-only
// (RequireWritable) as the app does for the storage database.
func openWritable(t testing.TB, dsn string, opts ...store.PostgresOption) (*store.Postgres, *pgxpool.Pool) {
	t.Helper()
	cfg, err := store.PostgresPoolConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.RequireWritable(cfg.ConnConfig); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return store.NewPostgres(pool, opts...), pool
}

func TestPostgresSessionTargets(t *testing.T) {
	for _, tc := range []struct {
		dsn      string
		target   string
		writable string // RequireWritable's error, "" for none
		copied   bool   // WritableCopy gives a second config
	}{
		{"host=a dbname=x", store.TargetAny, "", false},
		{"host=a,b dbname=x", store.TargetAny, "", true},
		{"host=a,b dbname=x target_session_attrs=read-write", store.TargetReadWrite, "", false},
		{"postgres://a:1,b:2/x?target_session_attrs=primary", store.TargetPrimary, "", false},
		{"host=a,b dbname=x target_session_attrs=prefer-standby", store.TargetPreferStandby, "prefer-standby would connect to a standby", true},
		{"host=a dbname=x target_session_attrs=standby", store.TargetStandby, "standby would connect to a standby", true},
		{"host=a dbname=x target_session_attrs=read-only", store.TargetReadOnly, "read-only would connect to a standby", true},
	} {
		t.Run(tc.dsn, func(t *testing.T) {
			cfg, err := store.PostgresPoolConfig(tc.dsn)
			if err != nil {
				t.Fatal(err)
			}
			if got := store.SessionTarget(cfg.ConnConfig); got != tc.target {
				t.Errorf("SessionTarget = %q, want %q", got, tc.target)
			}
			w, copied := store.WritableCopy(cfg)
			if copied != tc.copied {
				t.Errorf("WritableCopy copied = %v, want %v", copied, tc.copied)
			}
			if got := store.SessionTarget(w.ConnConfig); copied && got != store.TargetReadWrite {
				t.Errorf("the writable copy targets %q", got)
			}
			if copied && store.SessionTarget(cfg.ConnConfig) != tc.target {
				t.Error("WritableCopy changed its argument")
			}
			err = store.RequireWritable(cfg.ConnConfig)
			switch {
			case tc.writable == "" && err != nil:
				t.Errorf("RequireWritable: %v", err)
			case tc.writable == "" && store.SessionTarget(cfg.ConnConfig) == store.TargetAny:
				t.Error("RequireWritable left the target at any")
			case tc.writable != "" && (err == nil || !strings.Contains(err.Error(), tc.writable)):
				t.Errorf("RequireWritable: %v, want %q", err, tc.writable)
			}
		})
	}
	cfg, err := store.PostgresPoolConfig("postgres://u:secret@10.0.0.1:5432,10.0.0.2:5433/silo")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if got, want := store.NewPostgres(pool).Where(), `database "silo" on 10.0.0.1:5432 (and 1 more host)`; got != want {
		t.Errorf("Where = %q, want %q", got, want)
	}
}

// A primary with a synchronous standby behind host=a,b: while no host
// takes writes every operation is unavailable (never another error), the
// pool finds the promoted standby by itself, every insert that returned
// before the kill is there, and LISTEN comes back on the new primary.
func TestPostgresFailoverToSynchronousStandby(t *testing.T) {
	primary := pgtest.NewCluster(t, pgtest.Options{})
	standby := primary.NewStandby(t, pgtest.StandbyOptions{Synchronous: true})
	db := pgtest.DatabaseName(t, primary.DSN(t))
	// No target_session_attrs: RequireWritable supplies read-write.
	s, _ := openWritable(t, pgtest.MultiHostURL(db, nil, primary, standby))
	ctx := testCtx(t)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	lctx, stopListen := context.WithCancel(ctx)
	defer stopListen()
	woken := make(chan string, 1024)
	go func() { _ = s.Listen(lctx, func(m string) { woken <- m }) }()
	waitWoken(t, s, woken, "github:us:before")

	var acked []string
	for i := 0; i < 50; i++ {
		body := fmt.Sprintf("before-%d", i)
		mustInsert(t, s, payload("github:us:1", body))
		acked = append(acked, body)
	}
	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	for name, op := range map[string]func() error{
		"insert": func() error {
			_, err := s.InsertPayloads(octx, []store.NewPayload{payload("github:us:1", "gap")})
			return err
		},
		"claim": func() error {
			_, err := s.ClaimMailbox(octx, "github:us:1", "a", time.Now(), time.Now().Add(time.Minute))
			return err
		},
		"due":    func() error { _, err := s.DueMailboxes(octx, time.Now(), 10, nil); return err },
		"notify": func() error { return s.Notify(octx, []string{"github:us:1"}) },
	} {
		if err := op(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with the primary dead and the standby not promoted: %v, want ErrUnavailable", name, err)
		}
	}
	cancel()
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	var err error
	for err = errors.New("not yet"); err != nil && time.Since(promoted) < 30*time.Second; {
		_, err = s.InsertPayloads(ctx, []store.NewPayload{payload("github:us:1", "after")})
	}
	if err != nil {
		t.Fatalf("no insert within 30s of the promotion: %v", err)
	}
	t.Logf("first insert %s after the promotion", time.Since(promoted).Round(time.Millisecond))
	rows, err := s.NextPayloads(ctx, "github:us:1", 0, now(), false, 1000)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, r := range rows {
		have[string(r.Body)] = true
	}
	for _, b := range acked {
		if !have[b] {
			t.Fatalf("insert %s returned before the kill but is not on the promoted standby", b)
		}
	}
	// The listener reports the gap, then hears notifications again.
	for gap := false; !gap; {
		select {
		case m := <-woken:
			gap = m == ""
		case <-time.After(30 * time.Second):
			t.Fatal(`Listen did not report its reconnection with fn("")`)
		}
	}
	waitWoken(t, s, woken, "github:us:after")
}

// waitWoken notifies name until the listener hears it.
func waitWoken(t *testing.T, s *store.Postgres, woken <-chan string, name string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		_ = s.Notify(testCtx(t), []string{name})
		select {
		case m := <-woken:
			if m == name {
				return
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("the listener never heard %s", name)
}

// The lease table is UNLOGGED: a crash empties it. Nobody may claim a
// mailbox for one lease length after that, or a drainer that held it
// before the crash and is still recording a delivery would see it
// delivered again.
func TestPostgresLeasesAfterCrash(t *testing.T) {
	c := pgtest.NewCluster(t, pgtest.Options{})
	s, _ := openWritable(t, c.DSN(t))
	ctx := testCtx(t)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	lease := 15 * time.Second
	t0 := now()
	if ok, err := s.ClaimMailbox(ctx, "github:us:1", "a", t0, t0.Add(lease)); err != nil || !ok {
		t.Fatalf("claim on a fresh database: %v %v", ok, err)
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(time.Second)
	var ok bool
	var err error
	if pollErr := harness.Poll(30*time.Second, func() bool {
		ok, err = s.ClaimMailbox(ctx, "github:us:2", "b", t1, t1.Add(lease))
		return err == nil
	}); pollErr != nil {
		t.Fatalf("claim after the restart: %v", err)
	}
	if ok {
		t.Fatal("a mailbox was claimed right after the crash emptied the lease table")
	}
	if ok, _ := s.ClaimMailbox(ctx, "github:us:1", "b", t1.Add(lease/2), t1.Add(lease/2+lease)); ok {
		t.Fatal("a mailbox was claimed half a lease after the crash")
	}
	if ok, err := s.ClaimMailbox(ctx, "github:us:1", "b", t1.Add(lease), t1.Add(2*lease)); err != nil || !ok {
		t.Fatalf("claim one lease after the crash: %v %v", ok, err)
	}
	// And the rule is not in force on a database that did not crash.
	if ok, err := s.ClaimMailbox(ctx, "github:us:3", "c", t1.Add(lease), t1.Add(2*lease)); err != nil || !ok {
		t.Fatalf("second claim: %v %v", ok, err)
	}
}

// A refresh whose COMMIT is lost to a failover is written back on the new
// primary, without fetching the token again.
func TestPostgresWriteBackAcrossFailover(t *testing.T) {
	primary := pgtest.NewCluster(t, pgtest.Options{})
	standby := primary.NewStandby(t, pgtest.StandbyOptions{Synchronous: true})
	db := pgtest.DatabaseName(t, primary.DSN(t))
	s, pool := openWritable(t, pgtest.MultiHostURL(db, nil, primary, standby))
	ctx := testCtx(t)
	if err := s.MigrateDirectory(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO sentry_identity (id, data) VALUES (7, '{"access_token":"old","refresh_token":"r1"}')`); err != nil {
		t.Fatal(err)
	}
	if err := primary.WaitReplayed(standby); err != nil {
		t.Fatal(err)
	}
	var fetched atomic.Int32
	promoted := make(chan struct{})
	defer func() {
		if fetched.Load() > 0 {
			<-promoted
		}
	}()
	got, err := s.UpdateIdentityData(ctx, 7, func(cur json.RawMessage) (json.RawMessage, bool, error) {
		fetched.Add(1)
		// The token endpoint answered; the database goes away before
		// the write-back commits, and comes back as the standby.
		if err := primary.Kill(); err != nil {
			t.Error(err)
		}
		go func() {
			defer close(promoted)
			if err := standby.Promote(); err != nil {
				t.Error(err)
			}
		}()
		return json.RawMessage(`{"access_token":"new","refresh_token":"r2"}`), true, nil
	})
	if err != nil {
		t.Fatalf("UpdateIdentityData across the failover: %v", err)
	}
	if fetched.Load() != 1 {
		t.Errorf("fn ran %d times, want 1 (a second refresh of one token)", fetched.Load())
	}
	if !strings.Contains(string(got), `"new"`) {
		t.Errorf("result %s, want the new token", got)
	}
	ident, err := s.Identity(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ident.Data), `"r2"`) {
		t.Fatalf("the promoted standby holds %s: the write-back was lost", ident.Data)
	}
}

// An asynchronous standby that missed the primary's last inserts resumes
// the id sequence from what it received. A drainer that still holds ids
// read on the old primary (a delivered row whose deletion it records, the
// rest of its page) must not delete the rows captured on the new primary:
// ids carry the timeline (migration 0006), so none is handed out twice.
func TestPostgresNoIDReusedAfterFailover(t *testing.T) {
	primary := pgtest.NewCluster(t, pgtest.Options{})
	standby := primary.NewStandby(t, pgtest.StandbyOptions{})
	db := pgtest.DatabaseName(t, primary.DSN(t))
	s, _ := openWritable(t, pgtest.MultiHostURL(db, nil, primary, standby))
	ctx := testCtx(t)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	mustInsert(t, s, payload("github:us:old", "replicated"))
	if err := primary.WaitReplayed(standby); err != nil {
		t.Fatal(err)
	}
	// The standby receives nothing from here on: what follows is the
	// tail an asynchronous standby loses with its primary.
	if err := standby.Stop(); err != nil {
		t.Fatal(err)
	}
	var tail []store.NewPayload
	for i := 0; i < 100; i++ {
		tail = append(tail, payload("github:us:old", fmt.Sprint("unreplicated-", i)))
	}
	held := mustInsert(t, s, tail...)
	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := standby.Start(); err != nil {
		t.Fatal(err)
	}
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	var fresh []store.NewPayload
	for i := 0; i < 100; i++ {
		fresh = append(fresh, payload("github:us:new", fmt.Sprint("after-", i)))
	}
	var inserted []store.InsertResult
	if err := harness.Poll(30*time.Second, func() bool {
		var err error
		inserted, err = s.InsertPayloads(ctx, fresh)
		return err == nil
	}); err != nil {
		t.Fatalf("no insert on the promoted standby: %v", err)
	}
	reused := 0
	ids := map[int64]bool{}
	for _, r := range inserted {
		ids[r.ID] = true
	}
	for _, h := range held {
		if ids[h.ID] {
			reused++
		}
		// The drainer recording the delivery of a row it read on the
		// old primary.
		if err := s.DeletePayload(ctx, h.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
	}
	rows, err := s.NextPayloads(ctx, "github:us:new", 0, now(), false, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if reused > 0 || len(rows) != len(fresh) {
		t.Fatalf("%d ids of the old primary's lost tail were handed out again; %d of %d rows captured after the promotion are left",
			reused, len(rows), len(fresh))
	}
}

// A primary fenced read-only (default_transaction_read_only, as failover
// managers do to an old primary) while another host of the DSN takes
// writes: the connections that got read_only_sql_transaction are closed,
// so the next statement goes to the host that takes writes.
func TestPostgresReadOnlyServerIsLeft(t *testing.T) {
	old := pgtest.NewCluster(t, pgtest.Options{})
	next := old.NewStandby(t, pgtest.StandbyOptions{})
	db := pgtest.DatabaseName(t, old.DSN(t))
	s, pool := openWritable(t, pgtest.MultiHostURL(db, nil, old, next))
	ctx := testCtx(t)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	mustInsert(t, s, payload("github:us:1", "on the old primary"))
	if err := old.WaitReplayed(next); err != nil {
		t.Fatal(err)
	}
	if err := next.Promote(); err != nil {
		t.Fatal(err)
	}
	oc, err := pgx.Connect(ctx, old.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Close(ctx)
	if _, err := oc.Exec(ctx, `ALTER SYSTEM SET default_transaction_read_only = on`); err != nil {
		t.Fatal(err)
	}
	if _, err := oc.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		t.Fatal(err)
	}
	// Every pooled connection meets the fence once, at most.
	var failures int
	var last error
	for i := 0; i < 64; i++ {
		if _, err := s.InsertPayloads(ctx, []store.NewPayload{payload("github:us:1", fmt.Sprint(i))}); err != nil {
			if !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("insert on a read-only server: %v, want ErrUnavailable", err)
			}
			failures++
			last = err
		}
	}
	if failures > int(pool.Config().MaxConns) {
		t.Fatalf("%d of 64 inserts failed (last: %v): the pool kept its read-only connections", failures, last)
	}
	var port int
	if err := pool.QueryRow(ctx, `SELECT inet_server_port()`).Scan(&port); err != nil || port != next.Port() {
		t.Fatalf("the pool is on port %d (%v), want the new primary's %d", port, err, next.Port())
	}
	t.Logf("%d inserts met the read-only server (%v)", failures, last)
}

// Every engine operation through PgBouncer in transaction mode, with the
// DSN's default_query_exec_mode=exec: the conformance suite, nothing of a
// session relied on across transactions. With the default exec mode the
// prepared statements land on other server connections, and the error
// says what to add to the DSN.
func TestPostgresThroughPgBouncer(t *testing.T) {
	c := pgtest.NewCluster(t, pgtest.Options{})
	b := pgtest.NewPgBouncer(t, c, pgtest.PgBouncerOptions{PoolSize: 4})
	t.Run("exec", func(t *testing.T) {
		runConformance(t, engine{name: "postgres", open: func(t testing.TB, migrate bool) (engineStore, func(string)) {
			s, pool := openPostgres(t, b.DSN(t, c.DSN(t))+"&default_query_exec_mode=exec", migrate)
			return s, pgExec(t, pool)
		}})
	})
	t.Run("cache_statement", func(t *testing.T) {
		s, _ := openPostgres(t, b.DSN(t, c.DSN(t)), true)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failed error
		for w := 0; w < 8; w++ {
			wg.Go(func() {
				for i := 0; i < 50; i++ {
					_, err := s.DueMailboxes(testCtx(t), now(), 10, nil)
					if err != nil {
						mu.Lock()
						failed = err
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		if failed == nil {
			t.Log("PgBouncer kept the prepared statements (1.21+ with max_prepared_statements): nothing to explain")
			return
		}
		if !errors.Is(failed, store.ErrUnavailable) || !strings.Contains(failed.Error(), "default_query_exec_mode=exec") {
			t.Fatalf("error %v: want ErrUnavailable naming default_query_exec_mode=exec", failed)
		}
	})
}

// LISTEN through PgBouncer in transaction mode stays on a server
// connection nobody reads: Listen finds out (ErrListenDeaf) instead of
// waiting for ever; on a session of its own (ListenOn a direct
// connection), it hears the notifications sent through PgBouncer.
func TestPostgresListenThroughPgBouncer(t *testing.T) {
	c := pgtest.NewCluster(t, pgtest.Options{})
	b := pgtest.NewPgBouncer(t, c, pgtest.PgBouncerOptions{PoolSize: 4})
	direct := c.DSN(t)
	pooled := b.DSN(t, direct) + "&default_query_exec_mode=exec"
	t.Run("through the pooler", func(t *testing.T) {
		s, _ := openWritable(t, pooled)
		ctx, cancel := context.WithTimeout(testCtx(t), 30*time.Second)
		defer cancel()
		started := time.Now()
		err := s.Listen(ctx, func(string) {})
		if !errors.Is(err, store.ErrListenDeaf) {
			t.Fatalf("Listen through PgBouncer: %v, want ErrListenDeaf", err)
		}
		t.Logf("%v after %s", err, time.Since(started).Round(time.Millisecond))
	})
	t.Run("listen on a direct connection", func(t *testing.T) {
		cfg, err := store.PostgresPoolConfig(direct)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := openWritable(t, pooled, store.ListenOn(cfg.ConnConfig))
		ctx, cancel := context.WithCancel(testCtx(t))
		defer cancel()
		woken := make(chan string, 64)
		go func() { _ = s.Listen(ctx, func(m string) { woken <- m }) }()
		waitWoken(t, s, woken, "github:us:1")
	})
}
