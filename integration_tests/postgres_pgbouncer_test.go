package integration_tests

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

// PgBouncer in transaction mode (issue 15, point 2) between both Caddy
// instances and both databases: the production topology (capture, the
// drainer's claims and leases, the gateway, the credential proxy's row
// lock and write-back, dead letters and the admin API) with every
// statement going through a pooler that hands each transaction whichever
// of its 4 server connections is free. The DSNs set
// default_query_exec_mode=exec, as docs/scaling.md says to. LISTEN needs
// a session: with listen_dsn it has one on a direct connection; without
// it, the drainer says so once and polls.
func TestPgBouncerTransactionMode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen bool // listen_dsn names the server directly
	}{
		{"listen_dsn on a direct connection", true},
		{"no listen_dsn: polling, one warning", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := pgtest.NewCluster(t, pgtest.Options{})
			b := pgtest.NewPgBouncer(t, c, pgtest.PgBouncerOptions{PoolSize: 4})
			storage, control := c.DSN(t), c.DSN(t)
			shape := topoShape{
				storage: b.DSN(t, storage) + "&default_query_exec_mode=exec", storageAdmin: storage,
				control: b.DSN(t, control) + "&default_query_exec_mode=exec", controlAdmin: control,
			}
			if tc.listen {
				shape.listen = storage
			}
			top := newTopologyWith(t, shape)
			pgbouncerSuite(t, top)

			const deaf = "LISTEN hears no notifications"
			if tc.listen {
				waitFor(t, "both drainers' LISTEN sessions on the direct connection", 30*time.Second, func() bool {
					return listeningOn(t, c) >= len(top.instances)
				})
				if logs := top.logs(); strings.Contains(logs, deaf) {
					t.Errorf("a LISTEN on listen_dsn was reported deaf:\n%s", grepLines(logs, deaf))
				}
				return
			}
			for i, in := range top.instances {
				// The probe waits 3s for its notification before the
				// warning; the drain above may well be done first.
				waitFor(t, fmt.Sprintf("instance %d's warning that LISTEN is deaf", i), 30*time.Second, func() bool {
					return strings.Contains(in.Logs(), deaf)
				})
				logs := in.Logs()
				if n := strings.Count(logs, deaf); n != 1 {
					t.Errorf("instance %d logged the deaf LISTEN %d times, want once:\n%s", i, n, grepLines(logs, deaf))
				}
				if line := grepLines(logs, deaf); !strings.Contains(line, "listen_dsn") {
					t.Errorf("instance %d's warning does not name the fix (listen_dsn): %s", i, line)
				}
			}
		})
	}
}

// pgbouncerSuite is everything the instances do, on a topology whose
// databases are behind PgBouncer.
func pgbouncerSuite(t *testing.T, top *topology) {
	t.Run("gateway routes from the control database", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for i := range top.instances {
			for k, r := range topoRoutes {
				if p := top.gatewayCall(ctx, i, r, fmt.Sprintf("bouncer-route-%d-%d", i, k)); p != "" {
					t.Error(p)
				}
			}
		}
	})
	t.Run("credential proxy: one refresh per expiry under the row lock", func(t *testing.T) {
		if failed := top.concurrentProxyCalls(12, topoOIBothUS, topoOIBothDE, topoOIGitLab); len(failed) > 0 {
			t.Errorf("%d of 12 calls failed:\n  %s", len(failed), strings.Join(failed[:min(4, len(failed))], "\n  "))
		}
		for owner, want := range map[string]int{topoInstallBoth: 1, topoGitLab: 1} {
			if n := top.tp.minted(owner); n != want {
				t.Errorf("%d tokens minted for %s, want %d (the row lock did not hold through PgBouncer)", n, owner, want)
			}
		}
		md := topoJSON(t, top.control, `SELECT metadata::text FROM sentry_integration WHERE id = $1`, topoIntegrationBoth)
		if md["access_token"] != "ghs_7001_1" {
			t.Errorf("the write-back did not reach the control database: access_token %v", md["access_token"])
		}
	})
	t.Run("capture and drain: every webhook once, in order", func(t *testing.T) {
		tr := newTopoTraffic(top, uint64(time.Now().UnixNano()))
		never := make(chan struct{})
		var done [4]chan struct{}
		for w := range done {
			done[w] = make(chan struct{})
			go func() { defer close(done[w]); tr.background(never, w, 40) }()
		}
		for _, d := range done {
			<-d
		}
		payloads := func() int {
			var n int
			if err := top.storage.QueryRow(`SELECT count(*) FROM silo_webhook_payload`).Scan(&n); err != nil {
				return -1
			}
			return n
		}
		if harness.Poll(90*time.Second, func() bool { return tr.allDelivered() == 0 && payloads() == 0 }) != nil {
			t.Fatalf("after 90s: %d deliveries of accepted webhooks missing, %d rows still in silo_webhook_payload\n%s",
				tr.allDelivered(), payloads(), relTail(top.logs(), 40))
		}
		tr.verify(t)
		topoCheckDeadLetters(t, top.storage, tr)
	})
	t.Run("dead letter, listed and replayed through the admin API", func(t *testing.T) {
		pgbouncerDeadLetter(t, top)
	})
}

// pgbouncerDeadLetter sends a webhook whose signature the region refuses
// (401: a dead letter at once) to instance 0, and lists and replays it
// through instance 1's admin API.
func pgbouncerDeadLetter(t *testing.T, top *topology) {
	const id = "dead0000-0000-4000-8000-000000000001"
	body := fmt.Sprintf(`{"ref":"refs/heads/main","delivery":%q,"installation":{"id":%s},"repository":{"id":100,"full_name":"acme/repo-100"}}`,
		id, topoInstallUS)
	req, _ := http.NewRequest(http.MethodPost, top.bases[0]+topoHookPath, strings.NewReader(body))
	req.Header = http.Header{"Content-Type": {"application/json"}, "X-Github-Event": {"push"},
		"X-Github-Delivery": {id}, "X-Hub-Signature-256": {"sha256=" + strings.Repeat("0", 64)}}
	resp, err := top.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("capture of the webhook to be refused: %d", resp.StatusCode)
	}
	admin := &drainInstance{c: top.instances[1]}
	deadLetter := func() (float64, bool) {
		_, out := admin.admin(t, "GET", "/sentry_silo/dead_letters?limit=10")
		dls, _ := out["dead_letters"].([]any)
		if len(dls) != 1 {
			return 0, false
		}
		dl := dls[0].(map[string]any)
		if dl["reason"] != "dropped_401" || dl["region"] != "us" || dl["provider"] != "github" {
			t.Fatalf("dead letter %v, want dropped_401 in region us", dl)
		}
		return dl["id"].(float64), true
	}
	var first float64
	waitFor(t, "the dead letter in the admin API", 30*time.Second, func() bool {
		var ok bool
		first, ok = deadLetter()
		return ok
	})
	if status, out := admin.admin(t, "POST", fmt.Sprintf("/sentry_silo/dead_letters/%d/replay", int64(first))); status != 200 {
		t.Fatalf("replay: %d %v", status, out)
	}
	// The region refuses it again: a second delivery, a new dead letter.
	waitFor(t, "the replay delivered and dead again", 30*time.Second, func() bool {
		n := 0
		for _, d := range top.us.received() {
			if d.deliveryID == id {
				n++
			}
		}
		again, ok := deadLetter()
		return n == 2 && ok && again != first
	})
	if status, out := admin.admin(t, "GET", "/sentry_silo/mailboxes"); status != 200 {
		t.Fatalf("mailboxes: %d %v", status, out)
	}
}
