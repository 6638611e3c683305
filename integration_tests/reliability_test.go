package integration_tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

// Proof under load and faults (issue 7). Every scenario runs the real
// binary and ends with "nothing lost", checked marker by marker against the
// payload table, the dead-letter table and what the fake region received.
// kill -9 and restart of a single draining instance, a region answering
// 503 for a while and two healthy instances on one database are in
// drain_test.go; here: kill -9 during capture (both engines), a PostgreSQL
// restart under load, reloads under load, the SQLite default through a
// graceful restart with the region refusing connections, and one of two
// instances killed for good mid-drain.

func relSkipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binary under load; left out under -short")
	}
}

// relSQLitePath is where the embedded default keeps its database.
func relSQLitePath(c *harness.Caddy) string {
	return filepath.Join(c.DataDir(), "sentry_silo", "silo.db")
}

// relWarmUp captures one webhook, retrying until the store answers (the
// PostgreSQL migrations run in the background after the start).
func relWarmUp(t *testing.T, c *harness.Caddy, client *http.Client, base, marker string) {
	t.Helper()
	var status int
	var err error
	if harness.Poll(30*time.Second, func() bool {
		status, err = relCapture(context.Background(), client, base, 1, marker)
		return status == http.StatusAccepted
	}) != nil {
		t.Fatalf("first capture: %d %v\n%s", status, err, relTail(c.Logs(), 40))
	}
}

// kill -9 while a load generator is capturing (and the drainer is
// delivering): at the moment of the crash, every webhook that got a 202 is
// in the payload table or already at the region; after the restart every
// one of them is delivered and the table is empty.
func TestReliabilityKillDuringCapture(t *testing.T) {
	relSkipShort(t)
	t.Run("sqlite", func(t *testing.T) { relKillDuringCapture(t, "") })
	t.Run("postgres", func(t *testing.T) { relKillDuringCapture(t, pgtest.DSN(t)) })
}

func relKillDuringCapture(t *testing.T, dsn string) {
	region := newRelRegion(t, "us", true)
	region.delay.Store(int64(2 * time.Millisecond)) // keep a backlog for the crash
	storage := ""
	if dsn != "" {
		storage = "postgres " + dsn
	}
	cfg := newRelConfig(t, storage, region.url(), 4)
	cfg.drainer = "\t\t\tworkers 4\n"
	c := harness.Start(t, cfg.admin, cfg.caddyfile())
	var db *relDB
	if dsn != "" {
		db = openRelDB(t, "pgx", dsn)
	} else {
		db = openRelDB(t, "sqlite", relSQLiteSource(relSQLitePath(c)))
	}
	db.waitTables(t, c)
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	t.Cleanup(client.CloseIdleConnections)
	relWarmUp(t, c, client, cfg.base(), "kill-warm")

	var accepted atomic.Int64
	load := startRelLoad(8, 100000, "kill", func(w int, marker string) (int, error) {
		status, err := relCapture(context.Background(), client, cfg.base(), 1+w%4, marker)
		if status == http.StatusAccepted {
			accepted.Add(1)
		}
		return status, err
	})
	// 300 captures in, or 8s: fewer fail the check below.
	_ = harness.Poll(8*time.Second, func() bool { return accepted.Load() >= 300 })
	c.Kill()
	waitFor(t, "the load generator to see the crash", 15*time.Second, func() bool { return load.failed.Load() > 0 })
	results := load.finish()
	acc := append(relAccepted(results), "kill-warm")
	if len(acc) < 20 {
		t.Fatalf("only %d captures accepted before the kill: %s\n%s", len(acc), relStatusCounts(results), relTail(c.Logs(), 40))
	}
	for _, r := range results {
		if r.err == nil && r.status != http.StatusAccepted {
			t.Fatalf("capture %s answered %d before the kill", r.marker, r.status)
		}
	}

	pending, delivered := relCheckNothingLost(t, "at the crash", acc, db, region)
	t.Logf("at the crash: %d accepted (%s): %d pending in the payload table, %d delivered",
		len(acc), relStatusCounts(results), pending, delivered)

	c.Restart(t)
	relWaitDelivered(t, c, acc, db, region, 45*time.Second)
	relCheckNothingLost(t, "after the restart", acc, db, region)
	twice := 0
	for _, n := range region.delivered() {
		if n > 1 {
			twice++
		}
	}
	t.Logf("after the restart: all %d delivered; %d delivered twice (in flight at the kill: at least once)", len(acc), twice)
}

// PostgreSQL stops and starts again under capture load: while it is down
// capture answers 503 (never 202, never another status), it recovers by
// itself without a reload, nothing that got a 202 is lost, and the drainer
// delivers everything once the database is back.
func TestReliabilityPostgresRestartUnderLoad(t *testing.T) {
	relSkipShort(t)
	cluster := pgtest.NewCluster(t, pgtest.Options{})
	dsn := cluster.DSN(t)
	region := newRelRegion(t, "us", true)
	cfg := newRelConfig(t, "postgres "+dsn, region.url(), 2)
	c := harness.Start(t, cfg.admin, cfg.caddyfile())
	db := openRelDB(t, "pgx", dsn)
	db.waitTables(t, c)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	t.Cleanup(client.CloseIdleConnections)
	relWarmUp(t, c, client, cfg.base(), "pg-warm")

	var lastAccepted atomic.Int64 // unix nanos of the end of the last 202
	var accepted atomic.Int64
	load := startRelLoad(4, 100000, "pg", func(w int, marker string) (int, error) {
		status, err := relCapture(context.Background(), client, cfg.base(), 1+w%2, marker)
		if status == http.StatusAccepted {
			lastAccepted.Store(time.Now().UnixNano())
			accepted.Add(1)
		} else {
			time.Sleep(5 * time.Millisecond) // a 503 is instant: pace the sender, as a provider would
		}
		return status, err
	})
	// Under load first: 2000 captures (the second this test used to
	// sleep gave about 3900 on an idle 2-core machine).
	waitFor(t, "2000 captures before the outage", 60*time.Second, func() bool { return accepted.Load() >= 2000 })
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	time.Sleep(3 * time.Second) // the outage: its length is the scenario, nothing is waited for
	restarting := time.Now()
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	waitFor(t, "a 202 after the restart, without a reload", 30*time.Second, func() bool {
		return lastAccepted.Load() > started.UnixNano()
	})
	recovered := time.Unix(0, lastAccepted.Load())
	// And for 2000 more once it has recovered (6100 in the second this
	// test used to sleep).
	afterRecovery := accepted.Load() + 2000
	waitFor(t, "2000 captures after the recovery", 60*time.Second, func() bool { return accepted.Load() >= afterRecovery })
	results := load.finish()

	downAnswers := 0
	for _, r := range results {
		if r.err != nil {
			t.Fatalf("capture %s: no answer: %v", r.marker, r.err)
		}
		if r.status != http.StatusAccepted && r.status != http.StatusServiceUnavailable {
			t.Fatalf("capture %s: %d, want 202 or 503", r.marker, r.status)
		}
		if r.start.After(stopped) && r.end.Before(restarting) {
			if r.status == http.StatusAccepted {
				t.Fatalf("capture %s answered 202 while PostgreSQL was down", r.marker)
			}
			downAnswers++
		}
	}
	if downAnswers == 0 {
		t.Fatalf("no capture was answered while PostgreSQL was down: %s", relStatusCounts(results))
	}
	acc := append(relAccepted(results), "pg-warm")
	t.Logf("%d captures (%s); %d answered 503 while down; first 202 %s after the start returned",
		len(results), relStatusCounts(results), downAnswers, recovered.Sub(started).Round(time.Millisecond))

	relCheckNothingLost(t, "after the database came back", acc, db, region)
	relWaitDelivered(t, c, acc, db, region, 45*time.Second)
	relCheckNothingLost(t, "after the drain", acc, db, region)
}

// Twenty forced reloads through the admin API while gateway and capture
// requests run: not one request fails, every capture is delivered, and the
// binary ends with as many goroutines as it started with.
func TestReliabilityReloadsUnderLoad(t *testing.T) {
	relSkipShort(t)
	region := newRelRegion(t, "us", true)
	cfg := newRelConfig(t, "", region.url(), 2)
	c := harness.Start(t, cfg.admin, cfg.caddyfile())
	db := openRelDB(t, "sqlite", relSQLiteSource(relSQLitePath(c)))
	db.waitTables(t, c)

	// Captures use a connection each: a POST sent on a kept-alive
	// connection at the instant the old server closes it as idle is lost
	// before any handler sees it, and Go (like most webhook senders)
	// retries only idempotent requests there. Gateway GETs keep their
	// connections, as browsers do; Go retries those transparently.
	captureClient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	gatewayClient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	t.Cleanup(gatewayClient.CloseIdleConnections)
	gatewayGet := func(path string) (int, error) {
		resp, err := gatewayClient.Get(cfg.base() + path)
		if err != nil {
			return 0, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, err
		}
		if resp.StatusCode == http.StatusOK && string(body) != `{"region":"us"}` {
			return 0, fmt.Errorf("gateway answered %q", body)
		}
		return resp.StatusCode, nil
	}

	// Warm both paths up, then take the goroutine baseline.
	relWarmUp(t, c, captureClient, cfg.base(), "reload-warm")
	for i := 0; i < 5; i++ {
		if status, err := gatewayGet("/api/0/organizations/org-1/issues/"); status != 200 {
			t.Fatalf("gateway warm-up: %d %v", status, err)
		}
	}
	relWaitDelivered(t, c, []string{"reload-warm"}, db, region, 20*time.Second)
	gatewayClient.CloseIdleConnections()
	baseline := relSettledGoroutines(t, c)
	t.Logf("before the reloads: %d goroutines, %d connections open to the region", baseline, region.open.Load())

	captures := startRelLoad(3, 100000, "reload", func(w int, marker string) (int, error) {
		return relCapture(context.Background(), captureClient, cfg.base(), 1+w%2, marker)
	})
	gets := startRelLoad(3, 100000, "get", func(w int, marker string) (int, error) {
		return gatewayGet(fmt.Sprintf("/api/0/organizations/org-%d/issues/?m=%s", 1+w%2, marker))
	})
	// Each reload comes after 30 more captures, the load runs for 60
	// more after the last: what the 100ms and 200ms this test used to
	// sleep gave on this 2-core machine (657 captures across the 20
	// reloads; 30 to 100 per 100ms, with the machine's load). On a
	// slower machine as many requests go through each reload.
	underLoad := func(more int64) {
		t.Helper()
		target := captures.sent.Load() + more
		waitFor(t, fmt.Sprintf("%d more captures under load", more), 60*time.Second, func() bool { return captures.sent.Load() >= target })
	}
	const reloads = 20
	reloadStart := time.Now()
	for i := 0; i < reloads; i++ {
		underLoad(30)
		next := cfg
		next.route = fmt.Sprintf("\t\t\tread_timeout %ds\n", 60+i%2)
		c.Reload(t, next.caddyfile())
	}
	reloadTime := time.Since(reloadStart)
	underLoad(60)
	capResults := captures.finish()
	getResults := gets.finish()

	// A request may only fail as a connection reset (or closed) before
	// any answer, and only when it provably never reached a handler: a
	// reset capture must not be stored or delivered (checked below), a
	// reset gateway request must not have reached the region. On Linux,
	// Caddy gives each config its own SO_REUSEPORT socket and closes the
	// old one after a reload; connections the kernel had queued on it are
	// reset, some already at connect. That is below the handlers; a
	// handler failing mid-request shows up as a stored webhook without
	// its 202, a region that answered a reset request, or a wrong answer,
	// and fails the test.
	var failures, resets []string
	for _, r := range capResults {
		switch {
		case r.err == nil && r.status == http.StatusAccepted:
		case r.err != nil && relConnectionReset(r.err):
			resets = append(resets, r.marker)
			t.Logf("capture %s: no answer after %s (not stored: checked below): %v", r.marker, r.end.Sub(r.start).Round(time.Millisecond), r.err)
		default:
			failures = append(failures, fmt.Sprintf("capture %s: %d %v", r.marker, r.status, r.err))
		}
	}
	getResets := 0
	for _, r := range getResults {
		switch {
		case r.err == nil && r.status == http.StatusOK:
		case r.err != nil && relConnectionReset(r.err) && !region.sawGateway(r.marker):
			getResets++
			t.Logf("gateway %s: no answer after %s, never reached the region: %v", r.marker, r.end.Sub(r.start).Round(time.Millisecond), r.err)
		default:
			failures = append(failures, fmt.Sprintf("gateway %s: %d %v", r.marker, r.status, r.err))
		}
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed across %d reloads, e.g. %v", len(failures), len(capResults)+len(getResults), reloads, failures[:min(5, len(failures))])
	}
	if len(capResults) < reloads || len(getResults) < reloads {
		t.Fatalf("too little load: %d captures, %d gateway requests", len(capResults), len(getResults))
	}
	t.Logf("%d reloads in %s under load: %d captures, %d gateway requests, 0 failed answers; %d captures and %d gateway requests reset by the kernel before any handler",
		reloads, reloadTime.Round(time.Millisecond), len(capResults), len(getResults), len(resets), getResets)
	if len(resets)+getResets > 3*reloads {
		t.Fatalf("%d requests reset across %d reloads: more than the connections a reload can catch in an accept queue", len(resets)+getResets, reloads)
	}

	acc := append(relAccepted(capResults), "reload-warm")
	relWaitDelivered(t, c, acc, db, region, 45*time.Second)
	relCheckNothingLost(t, "after the reloads", acc, db, region)
	delivered := region.delivered()
	for _, m := range resets {
		if delivered[m] > 0 {
			t.Fatalf("capture %s was reset but its webhook was stored and delivered: a handler saw it and the client got no answer", m)
		}
	}

	// Old servers finish within the 2s grace period; their goroutines
	// (and every drainer, batch flusher, pool, delivery transport and
	// reverse_proxy transport of the old configs) must be gone once it has
	// passed. (The drainer's idle delivery connections outlived their
	// config until 4ef277c: 30-95 of them after 20 reloads.)
	//
	// What stays open belongs to the current config: a few gateway
	// connections (one per client worker) and one delivery connection
	// per mailbox being drained. The old configs' connections close as
	// their servers finish, so both are waited for together.
	gatewayClient.CloseIdleConnections()
	const tolerance = 10
	var n int
	var profile string
	var open map[string]int
	// 40 s: a request still in flight on an old config when that config
	// is cleaned up hands its connection back to a transport whose idle
	// connections were already closed, and that one connection closes at
	// the gateway's idle timeout (30 s), not at once. Seen under a loaded
	// machine (CI run with 7 other jobs): 6 gateway connections, limit 5,
	// still open when the 20 s this wait had before ran out.
	if harness.Poll(40*time.Second, func() bool {
		n, profile = relGoroutines(t, c)
		open = region.openConnections()
		return n <= baseline+tolerance && open["gateway"] <= 3+2 && open["delivery"] <= 2+2
	}) != nil {
		if n > baseline+tolerance {
			t.Fatalf("goroutines grew from %d to %d across %d reloads (connections open to the region: %v):\n%s",
				baseline, n, reloads, open, relTail(profile, 200))
		}
		t.Fatalf("connections the binary keeps to the region after the reloads: %v", open)
	}
	t.Logf("goroutines: %d before the reloads, %d after; connections open to the region: %v", baseline, n, open)
}

// The embedded default through a graceful restart: webhooks captured while
// the region is unreachable stay in the SQLite file under Caddy's data
// directory (no attempt spent), survive a Stop and a start, and once the
// region is back each is delivered exactly once. Strict mailboxes (legacy
// plugin webhooks) arrive in capture order; skip-on-failure mailboxes
// (Bitbucket) may be delivered a few at a time, so only their
// completeness is checked.
func TestReliabilitySQLiteDefaultRestart(t *testing.T) {
	relSkipShort(t)
	region := newRelRegion(t, "us", false) // nothing listens yet
	cfg := newRelConfig(t, "", region.url(), 3)
	c := harness.Start(t, cfg.admin, cfg.caddyfile())
	path := relSQLitePath(c)
	db := openRelDB(t, "sqlite", relSQLiteSource(path))
	db.waitTables(t, c)
	client := &http.Client{Timeout: 15 * time.Second}

	// Organizations 1 and 2 through the plugin path (strict), 3 through
	// Bitbucket (skip-on-failure).
	hookPath := map[int]string{1: relPluginPath(1), 2: relPluginPath(2), 3: relHookPath(3)}
	mailbox := map[int]string{1: "plugins:us:1", 2: "plugins:us:2", 3: "bitbucket:us:3"}
	strict := map[int]bool{1: true, 2: true}
	const n = 60
	sent := map[int][]string{}
	var all []string
	for i := 0; i < n; i++ {
		org := 1 + i%3
		marker := fmt.Sprintf("seq-%02d", i)
		status, err := relCaptureAt(context.Background(), client, cfg.base(), hookPath[org], marker)
		if status != http.StatusAccepted {
			t.Fatalf("capture %s: %d %v\n%s", marker, status, err, relTail(c.Logs(), 30))
		}
		sent[org] = append(sent[org], marker)
		all = append(all, marker)
	}
	checkStored := func(when string) {
		t.Helper()
		rows := db.payloads(t)
		if len(rows) != n {
			t.Fatalf("%s: %d rows, want %d", when, len(rows), n)
		}
		perMailbox := map[string][]string{}
		for _, r := range rows {
			if r.attempts != 0 {
				t.Fatalf("%s: row %d (%s) spent %d attempts on an unreachable region", when, r.id, r.marker, r.attempts)
			}
			perMailbox[r.mailbox] = append(perMailbox[r.mailbox], r.marker)
		}
		for org, want := range sent {
			if got := perMailbox[mailbox[org]]; !slices.Equal(got, want) {
				t.Fatalf("%s: mailbox %s holds %v, want %v", when, mailbox[org], got, want)
			}
		}
	}
	relWaitBreakerOpen(t, c, 3)
	checkStored("region unreachable")

	stopStart := time.Now()
	c.Stop()
	t.Logf("graceful stop took %s", time.Since(stopStart).Round(time.Millisecond))
	if c.Running() {
		t.Fatal("still running after Stop")
	}
	checkStored("after a graceful stop")

	restartAt := time.Now()
	c.Restart(t)
	t.Logf("restart took %s", time.Since(restartAt).Round(time.Millisecond))
	relWaitBreakerOpen(t, c, 3) // the new process's own metrics
	checkStored("restarted, region still unreachable")
	region.up(t)
	upAt := time.Now()
	relWaitDelivered(t, c, all, db, region, 30*time.Second)
	t.Logf("region back: all %d delivered in %s", n, time.Since(upAt).Round(time.Millisecond))
	relCheckNothingLost(t, "after the restart", all, db, region)
	for marker, times := range region.delivered() {
		if times != 1 {
			t.Fatalf("%s delivered %d times", marker, times)
		}
	}
	for org, want := range sent {
		got := region.arrivals(hookPath[org])
		if strict[org] && !slices.Equal(got, want) {
			t.Fatalf("strict mailbox %s: delivered in order %v, want %v", mailbox[org], got, want)
		}
		if sorted := slices.Sorted(slices.Values(got)); !slices.Equal(sorted, want) {
			t.Fatalf("mailbox %s: delivered %v, want each of %v once", mailbox[org], got, want)
		}
	}
	if !strings.HasPrefix(path, c.DataDir()) {
		t.Fatalf("database %s is not under the data directory %s", path, c.DataDir())
	}
}

// Two instances on one PostgreSQL database, and one of them is killed in
// the middle of a drain and never comes back: the survivor delivers what
// the dead one had claimed once its leases lapse (drain_test.go covers the
// restart of a single instance).
func TestReliabilityKillOneOfTwoInstances(t *testing.T) {
	relSkipShort(t)
	dsn := pgtest.DSN(t)
	region := newRelRegion(t, "us", true)
	region.delay.Store(int64(30 * time.Millisecond))
	cfgA := newRelConfig(t, "postgres "+dsn, region.url(), 4)
	cfgA.drainer = "\t\t\tworkers 4\n"
	a := harness.Start(t, cfgA.admin, cfgA.caddyfile())
	db := openRelDB(t, "pgx", dsn)
	db.waitTables(t, a)
	cfgB := newRelConfig(t, "postgres "+dsn, region.url(), 4)
	cfgB.drainer = cfgA.drainer
	b := harness.Start(t, cfgB.admin, cfgB.caddyfile())
	client := &http.Client{Timeout: 15 * time.Second}
	relWarmUp(t, a, client, cfgA.base(), "two-warm")

	// Strict mailboxes (legacy plugin path): each is drained one row at
	// a time by whichever instance holds its lease.
	const n = 300
	all := []string{"two-warm"}
	sent := map[int][]string{}
	for i := 0; i < n; i++ {
		base := cfgA.base()
		if i%2 == 1 {
			base = cfgB.base()
		}
		marker := fmt.Sprintf("two-%03d", i)
		if status, err := relCaptureAt(context.Background(), client, base, relPluginPath(1+i%4), marker); status != http.StatusAccepted {
			t.Fatalf("capture %s: %d %v", marker, status, err)
		}
		all = append(all, marker)
		sent[1+i%4] = append(sent[1+i%4], marker)
	}
	waitFor(t, "the drain under way", 30*time.Second, func() bool { return len(region.delivered()) >= 30 })
	a.Kill()
	killed := time.Now()
	pending, delivered := relCheckNothingLost(t, "at the kill", all, db, region)
	if pending == 0 {
		t.Fatal("everything was delivered before the kill; slow the region down")
	}
	relWaitDelivered(t, b, all, db, region, 45*time.Second)
	relCheckNothingLost(t, "after the survivor's drain", all, db, region)
	twice := 0
	for _, times := range region.delivered() {
		if times > 1 {
			twice++
		}
	}
	// FIFO holds across the handover: a row in flight at the kill may
	// come again, but no row overtakes an earlier one.
	for org, want := range sent {
		var firsts []string
		seen := map[string]bool{}
		for _, m := range region.arrivals(relPluginPath(org)) {
			if !seen[m] && m != "two-warm" {
				seen[m] = true
				firsts = append(firsts, m)
			}
		}
		if !slices.Equal(firsts, want) {
			t.Fatalf("strict mailbox plugins:us:%d: first deliveries in order %v, want %v", org, firsts, want)
		}
	}
	t.Logf("killed one of two instances with %d pending (%d delivered): the survivor delivered the rest in %s; %d delivered twice (in flight at the kill)",
		pending, delivered, time.Since(killed).Round(time.Millisecond), twice)
}
