package integration_tests

import (
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

// The directory on a hot standby (issue 15, point 3): directory_dsn names
// a streaming standby first and the primary second, with
// target_session_attrs=prefer-standby, so routing reads go to the standby.
// What must read its own writes does not: the credential proxy's row lock,
// token write-back and token reads go to the primary, and the mailbox
// heads are discovered in the storage database, whose DSN here lists the
// same standby first too and settles on the primary all the same. Replay
// on the standby is paused (pg_wal_replay_pause) for the lag to be real
// and measurable: every write after that is missing there.
func TestDirectoryOnHotStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary on PostgreSQL; left out under -short")
	}
	primary := pgtest.NewCluster(t, pgtest.Options{})
	standby := primary.NewStandby(t, pgtest.StandbyOptions{})
	control, storage := primary.DSN(t), primary.DSN(t)
	controlDB, storageDB := pgtest.DatabaseName(t, control), pgtest.DatabaseName(t, storage)
	const me = "silo-replica-test"
	onStandby := topoOpen(t, topoWithParam(standby.DatabaseURL(controlDB), "application_name", me))
	top := newTopologyWith(t, topoShape{
		control:      pgtest.MultiHostURL(controlDB, url.Values{"target_session_attrs": {"prefer-standby"}}, standby, primary),
		controlAdmin: topoWithParam(control, "application_name", me),
		// No target_session_attrs: the storage pool adds read-write.
		storage:      pgtest.MultiHostURL(storageDB, nil, standby, primary),
		storageAdmin: topoWithParam(storage, "application_name", me),
		beforeStart: func(t *testing.T) {
			// The instances check the directory tables at start: the
			// standby must have the seeded ones.
			if err := primary.WaitReplayed(standby); err != nil {
				t.Fatal(err)
			}
		},
	})
	// sessions counts the instances' sessions on c in database db.
	sessions := func(c *pgtest.Cluster, db string) int {
		admin := topoOpen(t, c.AdminURL())
		var n int
		if err := admin.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'
			AND application_name <> $2`, db, me).Scan(&n); err != nil {
			t.Fatal(err)
		}
		admin.Close()
		return n
	}

	t.Run("routing reads from the standby", func(t *testing.T) {
		for i := range top.instances {
			for k, r := range topoRoutes {
				if p := top.gatewayCall(t.Context(), i, r, fmt.Sprintf("replica-route-%d-%d", i, k)); p != "" {
					t.Error(p)
				}
			}
		}
		if n := sessions(standby, controlDB); n == 0 {
			t.Errorf("no session of the instances on the standby's control database: routing did not read from it")
		}
	})

	if err := standby.PauseReplay(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = standby.ResumeReplay() })

	t.Run("tokens: one refresh, written to and read from the primary", func(t *testing.T) {
		for round := 1; round <= 2; round++ {
			if failed := top.concurrentProxyCalls(12, topoOIBothUS, topoOIBothDE, topoOIGitLab); len(failed) > 0 {
				t.Errorf("round %d: %d of 12 calls failed:\n  %s", round, len(failed), strings.Join(failed[:min(4, len(failed))], "\n  "))
			}
			// One refresh per expired token: a second round that read
			// the token from the paused standby would find it expired
			// (GitHub) or present a refresh token already used (GitLab).
			for owner, want := range map[string]int{topoInstallBoth: 1, topoGitLab: 1} {
				if n := top.tp.minted(owner); n != want {
					t.Errorf("round %d: %d tokens minted for %s, want %d", round, n, owner, want)
				}
			}
		}
		if grants := top.tp.grantsPresented(); len(grants) != 1 {
			t.Errorf("GitLab saw refresh tokens %v, want one grant", grants)
		}
		token := func(db *sql.DB) string {
			md := topoJSON(t, db, `SELECT metadata::text FROM sentry_integration WHERE id = $1`, topoIntegrationBoth)
			s, _ := md["access_token"].(string)
			return s
		}
		if got := token(top.control); got != "ghs_7001_1" {
			t.Errorf("the primary holds access_token %q, want the refreshed ghs_7001_1", got)
		}
		// The lag is real: the standby still has the seeded token.
		if got := token(onStandby); got != topoExpiredBoth {
			t.Errorf("the paused standby holds access_token %q, want the seeded %q (replay was not paused)", got, topoExpiredBoth)
		}
		var behind int64
		if err := onStandby.QueryRow(`SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint`).Scan(&behind); err != nil {
			t.Fatal(err)
		}
		t.Logf("standby: %d bytes of WAL received and not replayed", behind)
		if n := sessions(primary, controlDB); n == 0 {
			t.Error("no session of the instances on the primary's control database: where did the tokens go?")
		}
	})

	t.Run("mailbox heads on the primary: capture and drain while the standby lags", func(t *testing.T) {
		tr := newTopoTraffic(top, uint64(time.Now().UnixNano()))
		never := make(chan struct{})
		var done [2]chan struct{}
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
		if n := sessions(standby, storageDB); n != 0 {
			t.Errorf("%d sessions of the instances on the standby's storage database: the storage pool must settle on the primary", n)
		}
	})
}
