package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
	"github.com/sentrysilo/caddy-silo/modules/internal/store/storetest"
)

var postgresEngine = engine{
	name: "postgres",
	open: func(t testing.TB, migrate bool) (engineStore, func(string)) {
		s, pool := openPostgres(t, pgtest.DSN(t), migrate)
		return s, pgExec(t, pool)
	},
}

func openPostgres(t testing.TB, dsn string, migrate bool) (*store.Postgres, *pgxpool.Pool) {
	t.Helper()
	s, pool := storetest.PostgresAt(t, dsn)
	if migrate {
		// One database for everything: ours and the directory's tables.
		if err := s.Migrate(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if err := s.MigrateDirectory(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	return s, pool
}

func pgExec(t testing.TB, pool *pgxpool.Pool) func(string) {
	return func(q string) {
		t.Helper()
		if _, err := pool.Exec(testCtx(t), q); err != nil {
			t.Fatalf("fixture %q: %v", q, err)
		}
	}
}

func TestPostgres(t *testing.T) {
	runConformance(t, postgresEngine)
}

// TestPostgresExecModes runs the insert paths with each
// default_query_exec_mode a DSN may choose: only cache_statement (the
// default) uses named prepared statements; the others, chosen for
// PgBouncer in transaction mode, must get unnamed ones.
func TestPostgresExecModes(t *testing.T) {
	for _, mode := range []string{"cache_describe", "describe_exec", "exec", "simple_protocol"} {
		for name, run := range map[string]func(*testing.T, engineStore, func(string)){
			"Dedup": testDedup, "ConcurrentDuplicates": testConcurrentDuplicates,
		} {
			t.Run(mode+"/"+name, func(t *testing.T) {
				dsn := pgtest.DSN(t)
				sep := "?"
				if strings.Contains(dsn, "?") {
					sep = "&"
				}
				s, pool := openPostgres(t, dsn+sep+"default_query_exec_mode="+mode, true)
				run(t, s, nil)
				var named int
				if err := pool.QueryRow(testCtx(t), `SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'silo_insert%'`).Scan(&named); err != nil {
					t.Fatal(err)
				}
				if named != 0 {
					t.Errorf("%d named insert statements prepared on this connection", named)
				}
			})
		}
	}
}

func TestPostgresPoolConfig(t *testing.T) {
	cfg, err := store.PostgresPoolConfig("postgres://u:secret@127.0.0.1:5432/silo?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.ConnConfig.RuntimeParams["application_name"]; got != "caddy-silo" {
		t.Errorf("application_name = %q", got)
	}
	if cfg.MaxConns < 16 || cfg.ConnConfig.ConnectTimeout == 0 || cfg.HealthCheckPeriod != 15*time.Second {
		t.Errorf("MaxConns %d ConnectTimeout %v HealthCheckPeriod %v", cfg.MaxConns, cfg.ConnConfig.ConnectTimeout, cfg.HealthCheckPeriod)
	}
	cfg, err = store.PostgresPoolConfig("host=127.0.0.1 application_name=mine pool_max_conns=3 connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] != "mine" || cfg.MaxConns != 3 || cfg.ConnConfig.ConnectTimeout != 2*time.Second {
		t.Errorf("DSN settings overridden: %v %d %v", cfg.ConnConfig.RuntimeParams, cfg.MaxConns, cfg.ConnConfig.ConnectTimeout)
	}
	_, err = store.PostgresPoolConfig("postgres://u:hunter2@127.0.0.1:notaport/x")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad DSN error = %v (must not quote the password)", err)
	}
}

// TestPostgresUnavailable points a store at a port nobody listens on.
func TestPostgresUnavailable(t *testing.T) {
	cfg, err := store.PostgresPoolConfig("postgres://u:p@127.0.0.1:1/x?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := store.NewPostgres(pool)
	ctx := testCtx(t)
	_, err = s.InsertPayloads(ctx, []store.NewPayload{payload("github:us:1", "x")})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("insert: %v, want ErrUnavailable", err)
	}
	if _, err := s.OrganizationBySlug(ctx, "acme"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("lookup: %v, want ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("ping: %v, want ErrUnavailable", err)
	}
}

// TestPostgresListen checks that Notify wakes a listener, once per
// mailbox, that InsertPayloads alone does not, and that Listen returns
// when its ctx ends.
func TestPostgresListen(t *testing.T) {
	s, pool := openPostgres(t, pgtest.DSN(t), true)
	ctx, cancel := context.WithCancel(testCtx(t))
	woken := make(chan string, 64)
	done := make(chan error, 1)
	go func() { done <- s.Listen(ctx, func(m string) { woken <- m }) }()

	// LISTEN has no ready signal: notify until the first wake arrives.
	got := ""
	for i := 0; i < 50 && got == ""; i++ {
		if err := s.Notify(ctx, []string{"github:us:1"}); err != nil {
			t.Fatal(err)
		}
		timer := time.NewTimer(200 * time.Millisecond)
		select {
		case got = <-woken:
		case <-timer.C:
		}
		timer.Stop()
	}
	if got == "" {
		t.Fatal("no notification after Notify")
	}
	// Drain the wakes of those Notify calls, then one coalesced Notify:
	// exactly one wake per mailbox.
	drainUntil(ctx, t, woken, s, nil)
	if err := s.Notify(ctx, []string{"github:us:1", "gitlab:de:2"}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	deadline := time.After(5 * time.Second)
	for len(seen) < 2 {
		select {
		case m := <-woken:
			seen[m]++
		case <-deadline:
			t.Fatalf("wakes = %v", seen)
		}
	}
	if seen["github:us:1"] != 1 || seen["gitlab:de:2"] != 1 {
		t.Errorf("wakes = %v, want one per mailbox", seen)
	}
	// Inserting does not notify by itself (the commit must not wait on
	// the notify lock); the caller notifies after it.
	mustInsert(t, s, payload("jira:us:3", "x"))
	drainUntil(ctx, t, woken, s, func(m string) { t.Errorf("InsertPayloads notified %q by itself", m) })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Listen returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Listen did not return after cancel")
	}
	// The listening connection went back to the pool without its LISTEN
	// (or was closed): no pooled connection listens.
	for _, c := range pool.AcquireAllIdle(testCtx(t)) {
		var n int
		err := c.QueryRow(testCtx(t), `SELECT count(*) FROM pg_listening_channels()`).Scan(&n)
		c.Release()
		if err != nil || n != 0 {
			t.Errorf("a pooled connection still listens on %d channels (%v)", n, err)
		}
	}
}

// drainUntil sends a notification of its own and reads wakes until it
// arrives, handing every other wake to other (when not nil). PostgreSQL
// delivers notifications in the order their transactions committed, and
// Listen hands them over in order: once it arrives, every notification
// committed before it has been read, and none is still on its way.
func drainUntil(ctx context.Context, t *testing.T, woken <-chan string, s *store.Postgres, other func(string)) {
	t.Helper()
	const marker = "drain:us:0"
	if err := s.Notify(ctx, []string{marker}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-woken:
			if m == marker {
				return
			}
			if other != nil {
				other(m)
			}
		case <-deadline:
			t.Fatal("the draining notification never arrived")
		}
	}
}

// realSentryTables are shaped like a real Sentry control database: more
// columns, varchar, jsonb metadata and data, constraints of their own.
var realSentryTables = []string{
	`CREATE TABLE sentry_organizationmapping (
		id bigserial PRIMARY KEY, organization_id bigint NOT NULL UNIQUE, slug varchar(50) NOT NULL UNIQUE,
		name varchar(64) NOT NULL DEFAULT '', date_created timestamptz NOT NULL DEFAULT now(),
		customer_id varchar(255), verified boolean NOT NULL DEFAULT false, idempotency_key varchar(48) NOT NULL DEFAULT '',
		region_name varchar(48) NOT NULL, status integer, require_2fa boolean NOT NULL DEFAULT false)`,
	`CREATE TABLE sentry_integration (
		id bigserial PRIMARY KEY, provider varchar(64) NOT NULL, external_id varchar(64) NOT NULL,
		name varchar(200) NOT NULL, metadata jsonb NOT NULL DEFAULT '{}', status integer DEFAULT 0,
		date_added timestamptz DEFAULT now(), date_updated timestamptz NOT NULL DEFAULT now(),
		UNIQUE (provider, external_id))`,
	`CREATE TABLE sentry_organizationintegration (
		id bigserial PRIMARY KEY, organization_id bigint NOT NULL, integration_id bigint NOT NULL REFERENCES sentry_integration(id),
		config jsonb NOT NULL DEFAULT '{}', default_auth_id bigint, date_added timestamptz DEFAULT now(), status integer NOT NULL DEFAULT 0,
		grace_period_end timestamptz, date_updated timestamptz NOT NULL DEFAULT now(), UNIQUE (organization_id, integration_id))`,
	`CREATE TABLE sentry_identity (
		id bigserial PRIMARY KEY, idp_id bigint NOT NULL DEFAULT 1, user_id bigint NOT NULL DEFAULT 1, external_id text NOT NULL DEFAULT '',
		data jsonb NOT NULL DEFAULT '{}', status integer NOT NULL DEFAULT 0, scopes text[] NOT NULL DEFAULT '{}',
		date_verified timestamptz NOT NULL DEFAULT now(), date_added timestamptz DEFAULT now())`,
	`CREATE TABLE sentry_identityprovider (
		id bigserial PRIMARY KEY, type varchar(64) NOT NULL, external_id varchar(64), config jsonb NOT NULL DEFAULT '{}',
		date_added timestamptz DEFAULT now(), UNIQUE (type, external_id))`,
	`CREATE TABLE sentry_organizationmembermapping (
		id bigserial PRIMARY KEY, organization_id bigint NOT NULL, date_added timestamptz NOT NULL DEFAULT now(),
		role varchar(32) NOT NULL DEFAULT 'member', user_id bigint, email varchar(75), inviter_id bigint,
		invite_status integer, organizationmember_id bigint NOT NULL DEFAULT 0)`,
	`CREATE TABLE sentry_sentryapp (
		id bigserial PRIMARY KEY, application_id bigint, proxy_user_id bigint, owner_id bigint NOT NULL,
		name text NOT NULL DEFAULT '', slug varchar(64) NOT NULL UNIQUE, status integer NOT NULL DEFAULT 0,
		uuid varchar(64) NOT NULL DEFAULT '', events text[] NOT NULL DEFAULT '{}', date_deleted timestamptz)`,
	`CREATE TABLE sentry_sentryappinstallation (
		id bigserial PRIMARY KEY, sentry_app_id bigint NOT NULL, organization_id bigint NOT NULL,
		uuid varchar(64) NOT NULL UNIQUE, status integer NOT NULL DEFAULT 0, date_deleted timestamptz)`,
	`CREATE TABLE sentry_projectkeymapping (
		id bigserial PRIMARY KEY, project_key_id bigint NOT NULL DEFAULT 0, public_key varchar(32) NOT NULL UNIQUE,
		region_name varchar(48) NOT NULL, date_updated timestamptz NOT NULL DEFAULT now())`,
}

// TestPostgresRealSentryTables runs Migrate and every directory lookup and
// write-back on tables that exist before us, as in a Sentry control
// database, and checks that Migrate left them alone.
func TestPostgresRealSentryTables(t *testing.T) {
	dsn := pgtest.DSN(t)
	_, pool := openPostgres(t, dsn, false)
	exec := pgExec(t, pool)
	for _, q := range realSentryTables {
		exec(q)
	}
	columns := func() string {
		var cols string
		if err := pool.QueryRow(testCtx(t), `SELECT string_agg(table_name || '.' || column_name || ':' || data_type, ',' ORDER BY table_name, ordinal_position)
			FROM information_schema.columns WHERE table_name LIKE 'sentry\_%'`).Scan(&cols); err != nil {
			t.Fatal(err)
		}
		return cols
	}
	before := columns()
	s, _ := openPostgres(t, dsn, true)
	if after := columns(); after != before {
		t.Fatalf("Migrate altered the Sentry tables:\nbefore %s\nafter  %s", before, after)
	}
	for _, q := range directoryFixture {
		exec(q)
	}
	checkDirectory(t, s)

	// Token write-back into a jsonb column.
	out, err := s.UpdateIntegrationMetadata(testCtx(t), 10, func(cur json.RawMessage) (json.RawMessage, bool, error) {
		return json.RawMessage(`{"access_token":"fresh","expires_at":"2099-01-01T00:00:00"}`), true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var token string
	if err := pool.QueryRow(testCtx(t), `SELECT metadata->>'access_token' FROM sentry_integration WHERE id = 10`).Scan(&token); err != nil || token != "fresh" {
		t.Errorf("jsonb metadata after write-back: %q %v (returned %s)", token, err, out)
	}
	if _, err := s.UpdateIdentityData(testCtx(t), 500, func(cur json.RawMessage) (json.RawMessage, bool, error) {
		return json.RawMessage(`{"access_token":"fresh"}`), true, nil
	}); err != nil {
		t.Fatal(err)
	}
	ident, err := s.Identity(testCtx(t), 500)
	if err != nil || !strings.Contains(string(ident.Data), `"fresh"`) {
		t.Errorf("identity after write-back: %s %v", ident.Data, err)
	}
	// NULL status (allowed by the real column) reads as 0.
	exec(`INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES (77, 'nullstatus', 'us', NULL)`)
	if o, err := s.OrganizationBySlug(testCtx(t), "nullstatus"); err != nil || o.Region != "us" {
		t.Errorf("org with NULL status: %+v %v", o, err)
	}
}

// TestPostgresMigrateFromInstances runs Migrate from two pools at once, as
// two Caddy instances starting together do.
func TestPostgresMigrateFromInstances(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, _ := openPostgres(t, dsn, false)
	b, pool := openPostgres(t, dsn, false)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*store.Postgres{a, b} {
		wg.Go(func() { errs[i] = s.Migrate(testCtx(t)) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n int
	versions := migrationFiles(t, "postgres")
	if err := pool.QueryRow(testCtx(t), `SELECT count(*) FROM silo_schema_migrations`).Scan(&n); err != nil || n != versions {
		t.Fatalf("recorded migrations = %d, %v; want %d", n, err, versions)
	}
}

// TestPostgresBodiesCompressWithLZ4 checks migration 0002 on a server
// built with lz4 (Debian's, here): a large body is stored compressed with
// lz4, not pglz, and reads back byte for byte.
func TestPostgresBodiesCompressWithLZ4(t *testing.T) {
	s, pool := openPostgres(t, pgtest.DSN(t), true)
	ctx := testCtx(t)
	for _, table := range []string{"silo_webhook_payload", "silo_dead_letter"} {
		for _, col := range []string{"request_body", "request_headers"} {
			var method string
			err := pool.QueryRow(ctx, `SELECT attcompression::text FROM pg_attribute
				WHERE attrelid = $1::regclass AND attname = $2`, table, col).Scan(&method)
			if err != nil || method != "l" {
				t.Errorf("%s.%s compression = %q, %v; want l (lz4)", table, col, method, err)
			}
		}
	}
	body := []byte(strings.Repeat(`{"sha":"0123456789abcdef","message":"a commit message"},`, 300))
	res, err := s.InsertPayloads(ctx, []store.NewPayload{{MailboxName: "github:us:1", Region: "us",
		Method: "POST", Path: "/extensions/github/webhook/", Headers: http.Header{"X-A": {"1"}}, Body: body}})
	if err != nil {
		t.Fatal(err)
	}
	var method string
	var got []byte
	if err := pool.QueryRow(ctx, `SELECT coalesce(pg_column_compression(request_body), ''), request_body
		FROM silo_webhook_payload WHERE id = $1`, res[0].ID).Scan(&method, &got); err != nil {
		t.Fatal(err)
	}
	if method != "lz4" {
		t.Errorf("a %d-byte body is stored with compression %q, want lz4", len(body), method)
	}
	if !bytes.Equal(got, body) {
		t.Error("the body did not read back byte for byte")
	}
}

// TestPostgresOutage stops the server under a store and a listener: every
// call fails with ErrUnavailable while it is down, and after it is back
// the store works again and Listen reconnects by itself, reporting the gap
// with fn("").
func TestPostgresOutage(t *testing.T) {
	c := pgtest.NewCluster(t, pgtest.Options{})
	s, _ := openPostgres(t, c.DSN(t), true)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	woken := make(chan string, 256)
	done := make(chan error, 1)
	go func() { done <- s.Listen(ctx, func(m string) { woken <- m }) }()
	waitWake := func(want string) {
		t.Helper()
		for i := 0; i < 50; i++ {
			mustInsert(t, s, payload(want, "x"))
			_ = s.Notify(ctx, []string{want})
			timer := time.NewTimer(200 * time.Millisecond)
			select {
			case m := <-woken:
				timer.Stop()
				if m == want {
					return
				}
			case <-timer.C:
			}
		}
		t.Fatalf("no wake for %s", want)
	}
	waitWake("github:us:before")

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	octx, ocancel := context.WithTimeout(ctx, 15*time.Second)
	_, err := s.InsertPayloads(octx, []store.NewPayload{payload("github:us:1", "x")})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("insert while down: %v, want ErrUnavailable", err)
	}
	if _, err := s.DueMailboxes(octx, now(), 10, nil); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("due mailboxes while down: %v, want ErrUnavailable", err)
	}
	if _, err := s.IntegrationByID(octx, 1); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("directory while down: %v, want ErrUnavailable", err)
	}
	ocancel()

	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	gap := false
	for deadline := time.After(30 * time.Second); !gap; {
		select {
		case m := <-woken:
			gap = m == ""
		case <-deadline:
			t.Fatal(`Listen did not report the reconnect with fn("")`)
		}
	}
	waitWake("github:us:after")
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Listen returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Listen did not return")
	}
}

// TestPostgresBatchIsOneTransaction pins the pgx behaviour InsertPayloads
// relies on: a pgx.Batch without BEGIN runs as one implicit transaction,
// so the INSERT and the NOTIFY commit together or not at all.
func TestPostgresBatchIsOneTransaction(t *testing.T) {
	_, pool := openPostgres(t, pgtest.DSN(t), false)
	pgExec(t, pool)(`CREATE TABLE batch_probe (a int)`)
	for range 3 { // the first run also prepares the statements
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO batch_probe VALUES ($1)`, 1)
		b.Queue(`SELECT 1 / $1::int`, 0)
		if err := pool.SendBatch(testCtx(t), b).Close(); err == nil {
			t.Fatal("division by zero did not fail the batch")
		}
	}
	var n int
	if err := pool.QueryRow(testCtx(t), `SELECT count(*) FROM batch_probe`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows left by failed batches = %d, %v", n, err)
	}
}

// TestPostgresUnstorableKeysAreNotFound: keys come from requests, and a key
// PostgreSQL cannot even hold (invalid UTF-8, NUL) is simply not there. An
// error would make capture and the gateway answer 503 to a forged key.
func TestPostgresUnstorableKeysAreNotFound(t *testing.T) {
	s, _ := openPostgres(t, pgtest.DSN(t), true)
	ctx := context.Background()
	for _, key := range []string{"555\x00", "\xff\xfe", "gitlab.example.com:\xff"} {
		if _, err := s.IntegrationByExternalID(ctx, "github", key); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("IntegrationByExternalID(%q) = %v, want ErrNotFound", key, err)
		}
		if _, err := s.OrganizationBySlug(ctx, key); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("OrganizationBySlug(%q) = %v, want ErrNotFound", key, err)
		}
		if _, err := s.ProjectKeyRegion(ctx, key); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("ProjectKeyRegion(%q) = %v, want ErrNotFound", key, err)
		}
	}
}

// A directory table missing from the database a lookup runs on: the
// error names the table and the database (name, host and port), never
// the password.
func TestPostgresMissingDirectoryTableNamesTheDatabase(t *testing.T) {
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("postgres", "pw-4711") // trust auth ignores it
	s, _ := openPostgres(t, u.String(), true)
	_, pool := openPostgres(t, dsn, false)
	if _, err := pool.Exec(testCtx(t), `DROP TABLE sentry_identity`); err != nil {
		t.Fatal(err)
	}
	_, err = s.Identity(testCtx(t), 1)
	msg := fmt.Sprint(err)
	if err == nil || !strings.Contains(msg, "sentry_identity") || !strings.Contains(msg, u.Host) || !strings.Contains(msg, strings.TrimPrefix(u.Path, "/")) || strings.Contains(msg, "pw-4711") {
		t.Fatalf("error %q; want one naming sentry_identity and %s, without the password", msg, u.Host)
	}
	if !strings.Contains(s.Where(), u.Host) || strings.Contains(s.Where(), "pw-4711") {
		t.Fatalf("Where() = %q", s.Where())
	}
}

// migrationFiles counts an engine's numbered migrations (NNNN_name.sql).
func migrationFiles(t *testing.T, engine string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("migrations", engine, "[0-9][0-9][0-9][0-9]_*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations for %s: %v", engine, err)
	}
	return len(files)
}
