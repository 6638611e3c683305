package integration_tests

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

// Failover (issue 15, point 1): two Caddy instances capture and drain on a
// primary with a streaming standby, through one DSN that names both hosts
// (host=a,b target_session_attrs=read-write). Under capture load the
// primary is killed (SIGKILL to all its processes, as its machine dying
// would) and the standby promoted (pg_ctl promote); Caddy is not
// restarted, reloaded or told.

// failoverRun is what one failover run saw.
type failoverRun struct {
	results              []relResult
	killed, promoted     time.Time // promoted: when pg_ctl promote was run
	acked                []string  // answered 202
	ackedAt              map[string]time.Time
	region               *relRegion
	db                   *relDB
	instances            []*harness.Caddy
	newPrimary           *pgtest.Cluster
	lagBytes             int64  // WAL the standby had not flushed, sampled under load just before the kill
	lagTime              string // pg_stat_replication.flush_lag then
	firstAfter, lastDown time.Duration
}

// failoverWorkers: each load worker captures into one strict mailbox
// (plugins:us:<org>), one webhook at a time, so the order of its markers
// is the order their rows were committed in.
const failoverWorkers = 8

func runFailover(t *testing.T, synchronous bool) *failoverRun {
	relSkipShort(t)
	primary := pgtest.NewCluster(t, pgtest.Options{})
	standby := primary.NewStandby(t, pgtest.StandbyOptions{Synchronous: synchronous})
	db := pgtest.DatabaseName(t, primary.DSN(t))
	dsn := pgtest.MultiHostURL(db, url.Values{"target_session_attrs": {"read-write"}}, primary, standby)
	run := &failoverRun{region: newRelRegion(t, "us", true), ackedAt: map[string]time.Time{}, newPrimary: standby}
	var bases []string
	for i := 0; i < 2; i++ {
		cfg := newRelConfig(t, "postgres "+dsn, run.region.url(), failoverWorkers)
		cfg.drainer = "\t\t\tworkers 8\n"
		run.instances = append(run.instances, harness.Start(t, cfg.admin, cfg.caddyfile()))
		bases = append(bases, cfg.base())
	}
	run.db = openRelDB(t, "pgx", dsn)
	run.db.waitTables(t, run.instances[0])
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	t.Cleanup(client.CloseIdleConnections)
	for i, c := range run.instances {
		relWarmUp(t, c, client, bases[i], fmt.Sprintf("failover-warm-%d", i))
	}

	var accepted atomic.Int64
	var lastAccepted atomic.Int64
	load := startRelLoad(failoverWorkers, 1_000_000, "fo", func(w int, marker string) (int, error) {
		i, _ := strconv.Atoi(marker[strings.LastIndexByte(marker, '-')+1:])
		status, err := relCaptureAt(context.Background(), client, bases[i%2], relPluginPath(1+w), marker)
		if status == http.StatusAccepted {
			accepted.Add(1)
			lastAccepted.Store(time.Now().UnixNano())
		} else {
			// A 503 is instant: pace the sender's retries, as a
			// provider's are, instead of spinning on them.
			<-time.After(5 * time.Millisecond)
		}
		return status, err
	})
	waitFor(t, "1000 captures before the kill", 60*time.Second, func() bool { return accepted.Load() >= 1000 })
	run.lagBytes, run.lagTime = replicationLag(t, primary)
	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	// When SIGKILL went out, not when Kill returned (once the
	// postmaster was gone, up to 1.9s later on this machine).
	run.killed = primary.KilledAt()
	// The gap: capture must be answering 503 before the standby is
	// promoted (every instance, so both noticed the dead primary).
	waitFor(t, "503s while no host takes writes", 30*time.Second, func() bool {
		n := 0
		for _, r := range load.snapshot() {
			if r.status == http.StatusServiceUnavailable && r.start.After(run.killed) {
				n++
			}
		}
		return n >= 2*failoverWorkers
	})
	// The standby takes writes from some moment while pg_ctl promote
	// runs; promoted is when it was asked to.
	run.promoted = time.Now()
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	// 10s: pgx dials a new connection at the first statement after the
	// old ones broke; a 202 comes as soon as one dial finds the promoted
	// host (30ms in TestPostgresFailoverToSynchronousStandby).
	waitFor(t, "a 202 after the promotion", 10*time.Second, func() bool { return lastAccepted.Load() > run.promoted.UnixNano() })
	after := accepted.Load() + 1000
	waitFor(t, "1000 captures after the promotion", 60*time.Second, func() bool { return accepted.Load() >= after })
	run.results = load.finish()

	first := time.Time{}
	for _, r := range run.results {
		if r.err != nil {
			t.Fatalf("capture %s: no answer: %v (Caddy must answer through a failover)", r.marker, r.err)
		}
		switch r.status {
		case http.StatusAccepted:
			run.acked = append(run.acked, r.marker)
			run.ackedAt[r.marker] = r.end
			if r.start.After(run.killed) && r.end.Before(run.promoted) {
				t.Fatalf("capture %s answered 202 while no host took writes (killed %s, promoted %s, answered %s)",
					r.marker, run.killed.Format(time.StampMicro), run.promoted.Format(time.StampMicro), r.end.Format(time.StampMicro))
			}
			if r.start.After(run.promoted) && (first.IsZero() || r.end.Before(first)) {
				first = r.end
			}
		case http.StatusServiceUnavailable:
			if d := r.end.Sub(run.killed); d > run.lastDown {
				run.lastDown = d
			}
		default:
			t.Fatalf("capture %s: %d, want 202 or 503", r.marker, r.status)
		}
	}
	run.firstAfter = first.Sub(run.promoted)
	for i := range run.instances {
		run.acked = append(run.acked, fmt.Sprintf("failover-warm-%d", i))
	}
	return run
}

// replicationLag samples how far the standby is behind, under load.
func replicationLag(t *testing.T, primary *pgtest.Cluster) (int64, string) {
	t.Helper()
	db, err := sql.Open("pgx", primary.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var bytes int64
	var lag sql.NullString
	if err := db.QueryRow(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::bigint, flush_lag::text
		FROM pg_stat_replication`).Scan(&bytes, &lag); err != nil {
		t.Fatalf("pg_stat_replication: %v", err)
	}
	return bytes, lag.String
}

// deliveredAll waits until every acknowledged webhook reached the region
// and the payload table is empty, and returns how often each marker was
// delivered.
func (run *failoverRun) deliveredAll(t *testing.T, want []string) map[string]int {
	t.Helper()
	relWaitDelivered(t, run.instances[0], want, run.db, run.region, 90*time.Second)
	return run.region.delivered()
}

// checkOrder checks that, in every mailbox, each worker's webhooks were
// delivered in the order it sent them (first deliveries; the worker sent
// one at a time, so that is their commit order).
func (run *failoverRun) checkOrder(t *testing.T) {
	t.Helper()
	for w := 0; w < failoverWorkers; w++ {
		last := -1
		seen := map[string]bool{}
		for _, m := range run.region.arrivals(relPluginPath(1 + w)) {
			if seen[m] || !strings.HasPrefix(m, "fo-") {
				continue
			}
			seen[m] = true
			i, _ := strconv.Atoi(m[strings.LastIndexByte(m, '-')+1:])
			if i < last {
				t.Fatalf("mailbox plugins:us:%d: %s delivered after fo-%d-%d", 1+w, m, w, last)
			}
			last = i
		}
	}
}

// listeningOn counts the sessions on c that hold the drainer's LISTEN.
func listeningOn(t *testing.T, c *pgtest.Cluster) int {
	t.Helper()
	db, err := sql.Open("pgx", c.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN silo_mailbox'`).Scan(&n); err != nil {
		return 0
	}
	return n
}

// A synchronous standby (synchronous_standby_names names it,
// synchronous_commit on): nothing acknowledged is lost, and every
// webhook that got a 202 before, during and after the failover is
// delivered exactly once, in order per mailbox. The drainers, their
// leases and their LISTEN sessions come back on the new primary by
// themselves.
func TestPostgresFailoverSynchronousStandby(t *testing.T) {
	run := runFailover(t, true)
	got := run.deliveredAll(t, run.acked)
	var lost, twice []string
	for _, m := range run.acked {
		switch got[m] {
		case 0:
			lost = append(lost, m)
		case 1:
		default:
			twice = append(twice, m)
		}
	}
	// Webhooks answered 503 may have been committed all the same (the
	// standby had the commit, the answer was lost with the primary):
	// delivered at most once too.
	unacked := 0
	for m, n := range got {
		if n > 1 && !slices.Contains(twice, m) {
			twice = append(twice, m)
		}
		if _, ok := run.ackedAt[m]; !ok && !strings.HasPrefix(m, "failover-warm") {
			unacked++
		}
	}
	sort.Strings(twice)
	if len(lost) > 0 || len(twice) > 0 {
		t.Fatalf("of %d acknowledged: %d lost (e.g. %v), %d delivered more than once (e.g. %v)",
			len(run.acked), len(lost), lost[:min(5, len(lost))], len(twice), twice[:min(5, len(twice))])
	}
	run.checkOrder(t)
	waitFor(t, "both drainers' LISTEN sessions on the new primary", 30*time.Second, func() bool {
		return listeningOn(t, run.newPrimary) >= len(run.instances)
	})
	t.Logf("failover (synchronous standby): %d captures (%s); %d acknowledged, %d delivered exactly once, 0 lost, 0 twice; "+
		"%d answered 503 were committed all the same and delivered once; last 503 %s after the kill, first 202 %s after the promotion; "+
		"standby %d bytes behind (flush_lag %s) at the kill",
		len(run.results), relStatusCounts(run.results), len(run.acked), len(run.acked), unacked,
		run.lastDown.Round(time.Millisecond), run.firstAfter.Round(time.Millisecond), run.lagBytes, run.lagTime)
}

// An asynchronous standby: a commit returns once the primary has it, so
// what the standby had not received when the primary died is lost,
// acknowledged or not. The test measures that window. The standby holds a
// prefix of the primary's WAL, so in each mailbox (one sender, one webhook
// at a time: commit order is send order) what is lost is the tail of what
// was acknowledged before the kill, never a webhook in the middle, and
// nothing acknowledged after the promotion is lost.
func TestPostgresFailoverAsynchronousStandbyLossWindow(t *testing.T) {
	run := runFailover(t, false)
	// Wait for what survived to drain: the acknowledged webhooks that
	// are still somewhere, then look at the rest.
	waitFor(t, "the payload table to empty", 90*time.Second, func() bool {
		rows, err := run.db.tryRead(`SELECT id, mailbox_name, request_body, attempts, '' FROM silo_webhook_payload ORDER BY id`)
		return err == nil && len(rows) == 0
	})
	got := run.region.delivered()
	var window time.Duration
	lost, twice := 0, 0
	lostIn := map[int][]int{} // worker → lost sequence numbers
	var lostAt []string
	for _, m := range run.acked {
		switch n := got[m]; {
		case n == 0:
			lost++
			if !strings.HasPrefix(m, "fo-") || run.ackedAt[m].After(run.promoted) {
				t.Errorf("%s was lost: acknowledged after the promotion (or at warm-up), it was on the new primary", m)
				continue
			}
			if d := run.killed.Sub(run.ackedAt[m]); d > window {
				window = d
			}
			w, i := failoverSeq(m)
			lostIn[w] = append(lostIn[w], i)
			lostAt = append(lostAt, fmt.Sprintf("%s acknowledged %s before the kill", m, run.killed.Sub(run.ackedAt[m]).Round(time.Millisecond)))
		case n > 1:
			twice++
		}
	}
	// The lost ones are a tail: no webhook of the same sender acknowledged
	// after a lost one (and before the kill) survived.
	for _, m := range run.acked {
		if got[m] == 0 || !strings.HasPrefix(m, "fo-") || !run.ackedAt[m].Before(run.killed) {
			continue
		}
		w, i := failoverSeq(m)
		if l := lostIn[w]; len(l) > 0 && slices.Min(l) < i {
			t.Errorf("sender %d: fo-%d-%d was lost but the later fo-%d-%d survived: the loss is not the tail the standby lacked",
				w, w, slices.Min(l), w, i)
		}
	}
	t.Logf("failover (asynchronous standby): %d acknowledged, %d lost, acknowledged at most %s before the kill; %d delivered twice "+
		"(deletions the standby had not received); standby %d bytes behind (flush_lag %s) under load just before the kill",
		len(run.acked), lost, window.Round(time.Microsecond), twice, run.lagBytes, run.lagTime)
	if len(lostAt) > 0 {
		t.Logf("lost: %s", strings.Join(lostAt, "; "))
	}
	var dead int
	if rows, err := run.db.tryRead(`SELECT id, mailbox_name, request_body, attempts, '' FROM silo_dead_letter`); err == nil {
		dead = len(rows)
	}
	t.Logf("%d dead letters", dead)
}

// failoverSeq splits a load marker fo-<worker>-<n>.
func failoverSeq(marker string) (worker, n int) {
	parts := strings.Split(marker, "-")
	worker, _ = strconv.Atoi(parts[1])
	n, _ = strconv.Atoi(parts[2])
	return worker, n
}

// snapshot returns the results so far, while the load goes on.
func (l *relLoad) snapshot() []relResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]relResult(nil), l.results...)
}

// The credential proxy across a failover of the control database
// (directory_dsn host=a,b target_session_attrs=read-write, a synchronous
// standby): a GitLab refresh whose token endpoint answers only after the
// primary died and the standby was promoted is written back on the new
// primary, where the rotated refresh token must be, without asking the
// token endpoint again (GitLab's refresh tokens are single use: a second
// grant with the old one is refused). Afterwards both instances use the
// token on the new primary: no further refresh.
func TestCredentialProxyAcrossFailover(t *testing.T) {
	relSkipShort(t)
	primary := pgtest.NewCluster(t, pgtest.Options{})
	standby := primary.NewStandby(t, pgtest.StandbyOptions{Synchronous: true})
	control := primary.DSN(t)
	db := pgtest.DatabaseName(t, control)
	top := newTopologyWith(t, topoShape{
		control:      pgtest.MultiHostURL(db, url.Values{"target_session_attrs": {"read-write"}}, primary, standby),
		controlAdmin: control,
		beforeStart: func(t *testing.T) {
			if err := primary.WaitReplayed(standby); err != nil {
				t.Fatal(err)
			}
		},
	})
	gate := make(chan struct{})
	top.tp.tokenGate.Store(&gate)
	answered := make(chan topoProxyCall, 1)
	go func() { answered <- top.proxyCall(context.Background(), 0, topoOIGitLab) }()
	waitFor(t, "the refresh at GitLab's token endpoint", 30*time.Second, func() bool { return top.tp.tokenAsked.Load() == 1 })
	// The row lock and the refresh's transaction are on the primary:
	// kill it with the refresh in flight, promote the standby, then let
	// GitLab answer.
	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	close(gate)
	if c := <-answered; !c.ok(topoOIGitLab) {
		t.Fatalf("the call whose refresh spanned the failover: %s", c)
	}
	if grants := top.tp.grantsPresented(); len(grants) != 1 {
		t.Fatalf("GitLab saw refresh tokens %v, want one grant", grants)
	}
	onNew := topoOpen(t, standby.DatabaseURL(db))
	var data string
	if err := onNew.QueryRow(`SELECT data FROM sentry_identity WHERE id = $1`, topoIdentityGitLab).Scan(&data); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(data, `"glrt_1"`) || !strings.Contains(data, `"glat_1"`) {
		t.Fatalf("the new primary holds identity data %s: the write-back was lost", data)
	}
	if failed := top.concurrentProxyCalls(8, topoOIGitLab); len(failed) > 0 {
		t.Errorf("%d of 8 calls after the failover failed:\n  %s", len(failed), strings.Join(failed[:min(4, len(failed))], "\n  "))
	}
	if n := top.tp.minted(topoGitLab); n != 1 {
		t.Errorf("%d GitLab tokens minted, want 1 (a second refresh of one token)", n)
	}
}
