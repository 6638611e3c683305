package integration_tests

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// The topology tests: the README's production Caddyfile on two databases
// (ours, and Sentry's control tables as Sentry creates them) and two
// instances. Helpers are in topology_helpers_test.go and
// topology_traffic_test.go; the Sentry schema in
// testdata/sentry_control_schema.sql.

// Gateway routes come from Sentry's tables in the control database, on
// both instances: organization by slug and by id, Sentry App installation
// and app slug, JS SDK loader public key, and apigw's 404 for an unknown
// organization.
func TestTopologyGatewayRoutesFromControlDatabase(t *testing.T) {
	top := newTopology(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range top.instances {
		for k, r := range topoRoutes {
			if p := top.gatewayCall(ctx, i, r, fmt.Sprintf("route-%d-%d", i, k)); p != "" {
				t.Error(p)
			}
		}
	}
}

// The credential proxy reads tokens from Sentry's tables in the control
// database and writes refreshed ones back there, where Sentry's own code
// reads them: GitHub installation tokens into sentry_integration.metadata
// (jsonb, expires_at as naive UTC ISO), GitLab OAuth tokens into
// sentry_identity.data (text). One refresh per expiry across both
// instances. The storage database holds our tables only, and a stale copy
// of an integration there is never used.
func TestTopologyCredentialProxyOnControlDatabase(t *testing.T) {
	top := newTopology(t)
	onlyOurTables := func(t *testing.T) {
		if got := topoTables(t, top.storage, `sentry\_%`); len(got) > 0 {
			t.Errorf("the storage database holds directory tables %v: they belong to the control database", got)
		}
		if got := topoTables(t, top.control, `silo\_%`); len(got) > 0 {
			t.Errorf("the control database holds our tables %v", got)
		}
		if got := topoSchema(t, top.control); got != top.controlSchema {
			t.Errorf("Sentry's tables were altered:\nbefore %s\nafter  %s", top.controlSchema, got)
		}
	}
	metadata := func(t *testing.T, id int) map[string]any {
		return topoJSON(t, top.control, `SELECT metadata::text FROM sentry_integration WHERE id = $1`, id)
	}
	wantRefreshed := func(t *testing.T, calls []topoAPICall, token string) {
		t.Helper()
		if tokens := topoTokens(calls); len(tokens) != 1 || tokens[token] == 0 {
			t.Errorf("the third party's API saw tokens %v, want only %s", tokens, token)
		}
		md := metadata(t, topoIntegrationBoth)
		if md["access_token"] != token {
			t.Errorf("control sentry_integration.metadata access_token = %v, want %s", md["access_token"], token)
		}
		// Sentry compares datetime.fromisoformat(expires_at) with a naive
		// utcnow(): an offset in the value would make that comparison
		// raise in Sentry.
		exp, _ := md["expires_at"].(string)
		at, err := time.Parse("2006-01-02T15:04:05", strings.SplitN(exp, ".", 2)[0])
		if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?$`).MatchString(exp) || err != nil ||
			at.Sub(time.Now().UTC()) < 50*time.Minute || at.Sub(time.Now().UTC()) > 70*time.Minute {
			t.Errorf("control metadata expires_at = %q, want naive UTC ISO about an hour ahead", exp)
		}
		sender, _ := md["sender"].(map[string]any)
		if md["account_type"] != "Organization" || md["domain_name"] != "github.com/acme" || sender["login"] != "octo" {
			t.Errorf("the write-back lost Sentry's other metadata keys: %v", md)
		}
		var kind string
		if err := top.control.QueryRow(`SELECT jsonb_typeof(metadata) FROM sentry_integration WHERE id = $1`, topoIntegrationBoth).Scan(&kind); err != nil || kind != "object" {
			t.Errorf("metadata is a jsonb %s (%v), want an object", kind, err)
		}
	}

	t.Run("storage holds only our tables", onlyOurTables)

	t.Run("GitHub: one refresh across both instances, written to control", func(t *testing.T) {
		seen := top.tp.callCount()
		if failed := top.concurrentProxyCalls(12, topoOIBothUS, topoOIBothDE); len(failed) > 0 {
			t.Errorf("%d of 12 calls failed:\n  %s", len(failed), strings.Join(failed[:min(4, len(failed))], "\n  "))
		}
		if n := top.tp.minted(topoInstallBoth); n != 1 {
			t.Errorf("%d tokens minted for installation %s, want 1 (one expiry)", n, topoInstallBoth)
		}
		wantRefreshed(t, top.tp.callsSince(seen), "ghs_7001_1")
	})

	t.Run("GitLab: one refresh_token grant, identity written to control", func(t *testing.T) {
		seen := top.tp.callCount()
		if failed := top.concurrentProxyCalls(8, topoOIGitLab); len(failed) > 0 {
			t.Errorf("%d of 8 calls failed:\n  %s", len(failed), strings.Join(failed[:min(4, len(failed))], "\n  "))
		}
		if tokens := topoTokens(top.tp.callsSince(seen)); len(tokens) != 1 || tokens["glat_1"] == 0 {
			t.Errorf("the third party's API saw tokens %v, want only glat_1", tokens)
		}
		if grants := top.tp.grantsPresented(); len(grants) != 1 || grants[0] != topoGitLabRefresh {
			t.Errorf("refresh tokens presented to GitLab: %v, want once %s", grants, topoGitLabRefresh)
		}
		data := topoJSON(t, top.control, `SELECT data FROM sentry_identity WHERE id = $1`, topoIdentityGitLab)
		exp, _ := data["expires"].(float64)
		if data["access_token"] != "glat_1" || data["refresh_token"] != "glrt_1" ||
			time.Until(time.Unix(int64(exp), 0)) < time.Hour || fmt.Sprint(data["scopes"]) != "[api]" {
			t.Errorf("control sentry_identity.data = %v, want access_token glat_1, refresh_token glrt_1, expires in ~2h, scopes kept", data)
		}
	})

	t.Run("GitHub: the next expiry refreshes once more", func(t *testing.T) {
		// An hour later: the token has expired at GitHub, and Sentry's
		// metadata says so.
		top.tp.revoke(metadata(t, topoIntegrationBoth)["access_token"].(string))
		mustExec(t, top.control, `UPDATE sentry_integration SET metadata = jsonb_set(metadata, '{expires_at}', '"2020-01-01T00:00:00"'),
			date_updated = now() WHERE id = $1`, topoIntegrationBoth)
		before := top.tp.minted(topoInstallBoth)
		seen := top.tp.callCount()
		if failed := top.concurrentProxyCalls(12, topoOIBothUS, topoOIBothDE); len(failed) > 0 {
			t.Errorf("%d of 12 calls failed:\n  %s", len(failed), strings.Join(failed[:min(4, len(failed))], "\n  "))
		}
		if n := top.tp.minted(topoInstallBoth); n != before+1 {
			t.Errorf("%d tokens minted for this expiry, want 1", n-before)
		}
		var ok []topoAPICall
		for _, c := range top.tp.callsSince(seen) {
			if c.ok { // a call with the revoked token may come first (401, then one refresh)
				ok = append(ok, c)
			}
		}
		wantRefreshed(t, ok, fmt.Sprintf("ghs_7001_%d", before+1))
	})

	t.Run("storage still holds only our tables", onlyOurTables)

	t.Run("a stale copy in the storage database is not used", func(t *testing.T) {
		// An operator's leftover from a single-database set-up, or the
		// tables migrate created there: a copy of integration 9002 with
		// another token.
		if len(topoTables(t, top.storage, "sentry_integration")) == 0 {
			mustExec(t, top.storage, `CREATE TABLE sentry_integration (id bigint PRIMARY KEY, provider text NOT NULL,
				external_id text NOT NULL, name text NOT NULL, metadata text NOT NULL, status integer NOT NULL)`)
		}
		future := time.Now().UTC().Add(8 * time.Hour).Format("2006-01-02T15:04:05")
		mustExec(t, top.storage, `INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES ($1, 'github', $2, 'acme-only', $3, 0)`,
			topoIntegrationUS, topoInstallUS, `{"access_token":"`+topoStaleCopy+`","expires_at":"`+future+`"}`)
		seen := top.tp.callCount()
		if failed := top.concurrentProxyCalls(6, topoOIUS); len(failed) > 0 {
			t.Errorf("%d of 6 calls failed:\n  %s", len(failed), strings.Join(failed[:min(4, len(failed))], "\n  "))
		}
		if tokens := topoTokens(top.tp.callsSince(seen)); len(tokens) != 1 || tokens[topoSeededUS] == 0 {
			t.Errorf("the third party's API saw tokens %v, want only the control database's %s", tokens, topoSeededUS)
		}
		if n := top.tp.minted(topoInstallUS); n != 0 {
			t.Errorf("%d tokens minted for installation %s, whose token in control is valid", n, topoInstallUS)
		}
		if md := metadata(t, topoIntegrationUS); md["access_token"] != topoSeededUS {
			t.Errorf("control metadata of integration %d changed: %v", topoIntegrationUS, md)
		}
	})

	t.Run("no secret in the logs", func(t *testing.T) {
		logs := top.logs()
		for _, secret := range []string{credSubnetSecret, credGitLabSecret, "ghs_7001_", "ghs_7002_", "glat_", "glrt_", "v0=", "BEGIN RSA"} {
			if strings.Contains(logs, secret) {
				t.Errorf("a log line holds %q:\n%s", secret, grepLines(logs, secret))
			}
		}
	})
}

// The capture and delivery path of the production shape under a bad day:
// GitHub webhooks with unique delivery ids and random bodies (300 B to
// 140 KB) sent to both instances, one sender in ten giving up (mid-body,
// before the answer, or by cancelling), two stretches of slow database in
// which a backlog of hundreds of webhooks waits on the payload table and
// senders give up while it is being written, gateway and credential proxy
// calls all along, and a forced reload of each instance mid-traffic.
//
// Every webhook answered 202 is delivered exactly once to each of its
// regions with its own bytes (the regions check the signature, as Sentry
// does), in order per mailbox; a webhook not accepted is delivered at most
// once with its own bytes, and not at all when its body was cut; nothing is
// left pending and nothing is dead-lettered. The gateway routes right
// throughout, the credential proxy's calls carry their installation's
// token, and the counters of the gateway and the drainer never go back.
func TestTopologyCaptureDrainUnderReloadAndGiveUps(t *testing.T) {
	top := newTopology(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("body seed %d", seed)
	tr := newTopoTraffic(top, seed)

	stop := make(chan struct{})
	var stopOnce sync.Once
	var workers sync.WaitGroup
	halt := func() { stopOnce.Do(func() { close(stop) }); workers.Wait() }
	defer halt()
	// The background senders run until the scenario ends (the bound is
	// a backstop): a fixed quota ran out before the slow windows did
	// once captures got faster.
	for w := 0; w < 4; w++ {
		workers.Go(func() { tr.background(stop, w, 50_000) })
	}
	var mu sync.Mutex
	var gatewayProblems []string
	var gatewayCalls atomic.Int64
	proxyOutcomes := map[string]int{}
	workers.Go(func() {
		ctx := context.Background()
		for k := 0; k < 20000; k++ {
			select {
			case <-stop:
				return
			default:
			}
			if p := top.gatewayCall(ctx, k%2, topoRoutes[k%len(topoRoutes)], fmt.Sprintf("load-%d", k)); p != "" {
				mu.Lock()
				gatewayProblems = append(gatewayProblems, p)
				mu.Unlock()
			}
			gatewayCalls.Add(1)
		}
	})
	workers.Go(func() {
		ctx := context.Background()
		ois := []int{topoOIBothUS, topoOIUS, topoOIBothDE, topoOIGitLab}
		for k := 0; k < 5000; k++ {
			select {
			case <-stop:
				return
			default:
			}
			oi := ois[k%len(ois)]
			outcome := "ok"
			if c := top.proxyCall(ctx, k%2, oi); !c.ok(oi) {
				outcome = c.String()
			}
			mu.Lock()
			proxyOutcomes[outcome]++
			mu.Unlock()
		}
	})

	waitSent := func(more int64) {
		t.Helper()
		want := tr.sent.Load() + more
		if harness.Poll(2*time.Minute, func() bool { return tr.sent.Load() >= want }) != nil {
			halt()
			t.Fatalf("background senders stalled at %d webhooks (want %d)\n%s", tr.sent.Load(), want, relTail(top.logs(), 60))
		}
	}
	var checkpoints []topoCheckpoint
	checkpoint := func(label string) {
		cp := top.checkpoint(t, label)
		t.Log(cp)
		checkpoints = append(checkpoints, cp)
	}
	// A backlog of 170 webhooks per instance (about 300 rows with the
	// two-region installation) is over the 256 rows from which a batch
	// goes through COPY and under the 512 of one batch.
	// Each instance is reloaded after a window; the last window runs on
	// the reloaded configs.
	windows := []*topoWindow{
		{name: "slow-1", backlog: 170, giveUps: 18, after: 24},
		{name: "slow-2", backlog: 170, giveUps: 18, after: 24},
		{name: "slow-3", backlog: 170, giveUps: 18, after: 24},
	}
	waitSent(40)
	for i, w := range windows {
		checkpoint(fmt.Sprintf("before %s", w.name))
		tr.slowWindow(t, w)
		t.Log(w)
		for _, p := range w.problems {
			t.Errorf("%s did not happen as planned: %s", w.name, p)
		}
		waitSent(20)
		if i >= len(top.instances) {
			continue
		}
		checkpoint(fmt.Sprintf("before reloading instance %d", i))
		top.instances[i].Reload(t, top.caddyfiles[i])
		waitSent(30)
		checkpoint(fmt.Sprintf("after reloading instance %d", i))
	}
	halt()

	payloads := func() int {
		var n int
		if err := top.storage.QueryRow(`SELECT count(*) FROM silo_webhook_payload`).Scan(&n); err != nil {
			return -1
		}
		return n
	}
	if harness.Poll(90*time.Second, func() bool { return tr.allDelivered() == 0 && payloads() == 0 }) != nil {
		t.Errorf("after 90s: %d deliveries of accepted webhooks missing, %d rows still in silo_webhook_payload",
			tr.allDelivered(), payloads())
	}
	checkpoint("drained")

	tr.verify(t)
	topoCheckDeadLetters(t, top.storage, tr)

	t.Logf("gateway: %d calls", gatewayCalls.Load())
	if len(gatewayProblems) > 0 {
		t.Errorf("gateway: %d of %d calls went wrong, e.g.:\n  %s", len(gatewayProblems), gatewayCalls.Load(),
			strings.Join(gatewayProblems[:min(6, len(gatewayProblems))], "\n  "))
	}
	var outcomes []string
	total := 0
	for o, n := range proxyOutcomes {
		outcomes = append(outcomes, fmt.Sprintf("%d× %s", n, o))
		total += n
	}
	sort.Strings(outcomes)
	t.Logf("credential proxy: %d calls: %s", total, strings.Join(outcomes, "; "))
	if proxyOutcomes["ok"] != total {
		t.Errorf("credential proxy: %d of %d calls did not reach the third party with their installation's token: %s",
			total-proxyOutcomes["ok"], total, strings.Join(outcomes, "; "))
	}
	// Tokens last an hour: one refresh each for the expired GitHub token
	// and the expired GitLab identity, none for the valid one.
	for owner, want := range map[string]int{topoInstallBoth: 1, topoInstallUS: 0, topoGitLab: 1} {
		if n := top.tp.minted(owner); n != want {
			t.Errorf("%d tokens minted for %s, want %d", n, owner, want)
		}
	}
	if back := topoBackwards(checkpoints); len(back) > 0 {
		t.Errorf("%d counter series went backwards:\n  %s", len(back), strings.Join(back, "\n  "))
	}
	if logs := top.logs(); strings.Contains(logs, "panic") {
		t.Errorf("a panic in the logs:\n%s", grepLines(logs, "panic"))
	}
}

// FIFO holds when commits finish out of id order, as they do with two
// flushers per instance and two instances: a webhook whose row got its id
// first but whose commit is held (here by a trigger the test adds, waiting
// on an advisory lock) is accepted, and a webhook sent after that 202 must
// not be delivered before it. The region holds deliveries so that the
// drainer's turn on the mailbox reads its first full page while the held
// row is still invisible.
func TestTopologyMailboxOrderWhenCommitsFinishOutOfOrder(t *testing.T) {
	top := newTopology(t)
	tr := newTopoTraffic(top, 1)
	tr.oneRepository = true // one mailbox
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hook := func(phase string, instance int) *topoHook {
		return tr.newHookFor(topoInstallUS, topoNormal, phase, instance, []int{300})
	}
	send := func(h *topoHook) {
		t.Helper()
		if tr.send(h, nil); h.status != http.StatusAccepted {
			t.Fatalf("%s: %v\n%s", h, h.err, relTail(top.logs(), 40))
		}
	}
	gate := make(chan struct{})
	top.us.gate.Store(&gate)
	opened := false
	open := func() {
		if !opened {
			opened = true
			top.us.gate.Store(nil)
			close(gate)
		}
	}
	defer open()
	held := func(what string, pred func(string) bool) {
		t.Helper()
		if harness.Poll(30*time.Second, func() bool { return pred(top.us.heldDelivery()) }) != nil {
			t.Fatalf("no delivery of %s reached the region (holding %q)", what, top.us.heldDelivery())
		}
	}

	// The drainer's first turn on github:us:9002:0:push delivers p and waits at
	// the region.
	p := hook("first", 1)
	send(p)
	held("the first webhook", func(id string) bool { return id == p.id })

	// a gets its id, and its commit waits on the lock the test holds.
	a := hook("held", 0)
	lock, err := top.storage.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(ctx, `SELECT pg_advisory_lock(7002)`); err != nil {
		t.Fatal(err)
	}
	unlocked := false
	unlock := func() {
		if !unlocked {
			unlocked = true
			_, _ = lock.ExecContext(ctx, `SELECT pg_advisory_unlock(7002)`)
		}
	}
	defer unlock()
	mustExec(t, top.storage, fmt.Sprintf(`CREATE FUNCTION topo_hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.delivery_key = '%s' THEN PERFORM pg_advisory_xact_lock_shared(7002); END IF;
			RETURN NULL;
		END $$`, a.id))
	mustExec(t, top.storage, `CREATE TRIGGER topo_hold_commit AFTER INSERT ON silo_webhook_payload FOR EACH ROW EXECUTE FUNCTION topo_hold_commit()`)
	defer mustExec(t, top.storage, `DROP TRIGGER topo_hold_commit ON silo_webhook_payload; DROP FUNCTION topo_hold_commit()`)
	aDone := make(chan struct{})
	go func() { defer close(aDone); tr.send(a, nil) }()
	if harness.Poll(30*time.Second, func() bool {
		var n int
		_ = top.storage.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2
			AND wait_event_type = 'Lock' AND wait_event = 'advisory'`, top.storageName, topoApplicationName(0)).Scan(&n)
		return n > 0
	}) != nil {
		t.Fatal("the held webhook's commit never waited on the advisory lock")
	}

	// 120 webhooks with later ids commit around it: more than one page
	// (100 rows) of the drainer's turn. From here to a's commit must stay
	// under the batcher's 5s commit timeout.
	var wg sync.WaitGroup
	var later []*topoHook
	for k := 0; k < 120; k++ {
		h := hook("around", 1)
		later = append(later, h)
		wg.Go(func() { tr.send(h, nil) })
	}
	wg.Wait()
	for _, h := range later {
		if h.status != http.StatusAccepted {
			t.Fatalf("%s: %v", h, h.err)
		}
	}
	// p goes; the next turn reads its first page, without a, and waits.
	// A drainer that does not deliver past a row still being committed
	// is right too: then nothing arrives, and a's commit cannot wait
	// longer.
	gate <- struct{}{}
	if harness.Poll(2*time.Second, func() bool { id := top.us.heldDelivery(); return id != "" && id != p.id }) != nil {
		t.Log("the drainer delivered nothing past the row being committed")
	}

	// a commits and is accepted; c is sent after that.
	unlock()
	<-aDone
	if a.status != http.StatusAccepted {
		t.Fatalf("the held webhook was not accepted: %s %v (the batcher's commit timeout is 5s)", a, a.err)
	}
	c := hook("after", 1)
	send(c)
	open()
	if harness.Poll(60*time.Second, func() bool { return tr.allDelivered() == 0 }) != nil {
		t.Fatalf("%d deliveries missing\n%s", tr.allDelivered(), relTail(top.logs(), 40))
	}
	pos := map[string]int{}
	for _, d := range top.us.received() {
		pos[d.deliveryID] = d.seq
	}
	if pos[c.id] < pos[a.id] {
		t.Errorf("%s was accepted before %s was sent, and delivered after it (arrivals %d and %d at the region)", a, c, pos[a.id], pos[c.id])
	}
	tr.verify(t)
}

// topoCheckDeadLetters fails on any dead letter, naming its webhook.
func topoCheckDeadLetters(t *testing.T, db *sql.DB, tr *topoTraffic) {
	t.Helper()
	rows, err := db.Query(`SELECT mailbox_name, reason, last_status, coalesce(delivery_key, '') FROM silo_dead_letter ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	byID := map[string]*topoHook{}
	for _, h := range tr.all() {
		byID[h.id] = h
	}
	reasons := map[string]int{}
	var examples []string
	n := 0
	for rows.Next() {
		var mailbox, reason, key string
		var status int
		if err := rows.Scan(&mailbox, &reason, &status, &key); err != nil {
			t.Fatal(err)
		}
		n++
		reasons[reason]++
		if len(examples) < 6 {
			what := fmt.Sprintf("delivery key %q", key)
			if h := byID[key]; h != nil {
				what = h.String()
			}
			examples = append(examples, fmt.Sprintf("%s in %s (last status %d): %s", reason, mailbox, status, what))
		}
	}
	if n > 0 {
		t.Errorf("%d dead letters, by reason %v, e.g.:\n  %s", n, reasons, strings.Join(examples, "\n  "))
	}
}
