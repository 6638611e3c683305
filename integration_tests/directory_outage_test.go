package integration_tests

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

// outageSetup is one instance routing through sentry_region_route, with
// the directory in Sentry's control database on a cluster of the test's
// own, which the test stops and starts.
type outageSetup struct {
	c        *harness.Caddy
	base     string
	cluster  *pgtest.Cluster
	control  *sql.DB
	us, de   *fakeUpstream
	client   *http.Client
	stateDir string
	config   string // the Caddyfile
	// deliveries numbers the GitHub webhooks sent, for their delivery ids.
	deliveries int
}

// outageTTL is directory_cache's TTL in these tests: short, so that the
// cache expires and lookups reach the stopped database within seconds,
// and long enough to be a generous bound on seeing a change once the
// database is back (that takes up to a second: the directory asks a
// failing database once a second per key).
const outageTTL = 4 * time.Second

// newOutageSetup starts the instance. storage is its storage line (""
// is the embedded SQLite; "postgres" is a database on the cluster);
// stopped stops the cluster before the instance starts.
func newOutageSetup(t *testing.T, storage string, stopped bool) *outageSetup {
	t.Helper()
	s := &outageSetup{
		cluster: pgtest.NewCluster(t, pgtest.Options{}),
		us:      newFakeUpstream(t, "us"), de: newFakeUpstream(t, "de"),
		client: &http.Client{Timeout: 30 * time.Second},
	}
	control := newFakeUpstream(t, "control")
	dsn := s.cluster.DSN(t)
	createSentryControlTables(t, dsn)
	var err error
	if s.control, err = sql.Open("pgx", dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.control.Close() })
	mustExec(t, s.control, `INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES (1, 'acme', 'us', 0), (2, 'beta', 'de', 0)`)
	mustExec(t, s.control, `INSERT INTO sentry_projectkeymapping (project_key_id, public_key, region_name) VALUES (10, 'pkde', 'de')`)
	mustExec(t, s.control, `INSERT INTO sentry_sentryappinstallation (uuid, organization_id, sentry_app_id) VALUES ('inst-beta', 2, 7)`)
	mustExec(t, s.control, `INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES (20, 'github', '555', 'acme-gh', '{"access_token":"ghs_outage_token"}', 0)`)
	mustExec(t, s.control, `INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES (21, 1, 20, 0)`)
	switch storage {
	case "":
		storage = "storage sqlite"
	case "postgres":
		storage = "storage postgres " + s.cluster.DSN(t)
	}
	if stopped {
		if err := s.cluster.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	admin, site := harness.ReservePort(t), harness.ReservePort(t)
	s.base = site.URL()
	s.config = fmt.Sprintf(`{
%s	sentry_silo {
		%s
		directory_dsn %s
		region us %s
		region de %s
		directory_cache %s 1s
		drainer {
			off
		}
	}
}
http://%s {
	sentry_silo_health
	sentry_webhook_capture
	sentry_region_route
	reverse_proxy %s
}
`, harness.GlobalOptions(admin), storage, dsn, s.us.URL(), s.de.URL(), outageTTL, site.Addr, control.Host())
	s.c = harness.Start(t, admin, s.config)
	s.stateDir = filepath.Join(s.c.DataDir(), "sentry_silo")
	return s
}

// get sends a GET and returns the status and body.
func (s *outageSetup) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := s.client.Get(s.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// wantRoutes checks that each path reached its region.
func (s *outageSetup) wantRoutes(t *testing.T, when string, routes map[string]string) {
	t.Helper()
	for path, region := range routes {
		if status, body := s.get(t, path); status != http.StatusOK || body != "hello from "+region {
			t.Fatalf("%s: GET %s = %d %q, want 200 from %s\n%s", when, path, status, body, region, relTail(s.c.Logs(), 30))
		}
	}
}

// capture posts a GitHub push of installation 555 (acme's, region us) and
// wants it stored: 202.
func (s *outageSetup) capture(t *testing.T, when string) {
	t.Helper()
	s.deliveries++
	req, _ := http.NewRequest(http.MethodPost, s.base+"/extensions/github/webhook/",
		strings.NewReader(`{"installation":{"id":555},"repository":{"id":4242}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("outage-%d", s.deliveries))
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("%s: GitHub webhook answered %d %q, want 202 (stored)\n%s", when, resp.StatusCode, body, relTail(s.c.Logs(), 30))
	}
}

func (s *outageSetup) readiness(t *testing.T) (int, map[string]any) {
	t.Helper()
	status, body := s.get(t, "/_silo/ready")
	var r map[string]any
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("readiness body %q: %v", body, err)
	}
	return status, r
}

func (s *outageSetup) stale(t *testing.T, kind string) float64 {
	t.Helper()
	return metricValue(t, s.c.AdminAddr, "caddy_sentry_directory_stale_answers_total", fmt.Sprintf("kind=%q", kind))
}

var known = map[string]string{
	"/api/0/organizations/acme/projects/":                          "us",
	"/api/0/organizations/beta/projects/":                          "de",
	"/js-sdk-loader/pkde.min.js":                                   "de",
	"/api/0/sentry-app-installations/inst-beta/external-requests/": "de",
}

// Issue 14, point 8: stop the control database, keep routing the known
// organizations, project key and Sentry App installation, and storing the
// known integration's webhooks (from their last good answers, counted;
// the snapshot without the integration's token); an unknown one
// gets the directory-error answer; reload the config and keep routing
// them, the metric still counting; restart Caddy during the outage and
// keep routing them (from the snapshot); bring the database back, change
// a mapping, see it at once (the last good answers never outlive an
// answer of the database).
func TestDirectoryOutageKeepsRoutingKnownOrganizations(t *testing.T) {
	s := newOutageSetup(t, "", false)
	waitFor(t, "readiness", 30*time.Second, func() bool { st, _ := s.readiness(t); return st == http.StatusOK })
	s.wantRoutes(t, "database up", known)
	s.capture(t, "database up")

	if err := s.cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	// Every request routes while the cache expires and the lookups start
	// failing; wait until the failures are answered from the last good
	// answers.
	waitFor(t, "stale answers", 30*time.Second, func() bool {
		s.wantRoutes(t, "database stopped", known)
		return s.stale(t, "organization") >= 2 && s.stale(t, "project_key") >= 1 && s.stale(t, "sentry_app_installation") >= 1
	})
	if n := strings.Count(s.c.Logs(), "directory database failing"); n != 1 {
		t.Fatalf("the outage was logged %d times, want once:\n%s", n, relTail(s.c.Logs(), 30))
	}
	s.capture(t, "database stopped")
	if n := s.stale(t, "integration"); n < 1 {
		t.Fatalf("the webhook's integration was not answered stale (%v)", n)
	}
	resp, err := s.client.Get(s.base + "/api/0/organizations/gamma/projects/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantAPIError(t, resp, body, http.StatusServiceUnavailable, "Service unavailable")
	if st, r := s.readiness(t); st != http.StatusOK {
		t.Fatalf("readiness during the outage: %d %v; an instance that routes must stay in the pool", st, r)
	}

	// A reload during the outage: the new config takes the running one's
	// last good answers, and the metric keeps counting.
	before := s.stale(t, "organization")
	s.c.Reload(t, s.config)
	// Not on a connection of the old config, which closes them as the
	// reload returns (harness.forgetConnections says why).
	s.client.CloseIdleConnections()
	s.wantRoutes(t, "reloaded, database still stopped", known)
	if after := s.stale(t, "organization"); after < before+2 {
		t.Fatalf("stale organization answers went from %v to %v over a reload and two lookups, want them to keep counting", before, after)
	}
	if st, r := s.readiness(t); st != http.StatusOK {
		t.Fatalf("readiness after a reload during the outage: %d %v", st, r)
	}

	// A restart during the outage: the stop writes the snapshot, the start
	// loads it.
	s.c.Stop()
	snapshot := filepath.Join(s.stateDir, "directory-snapshot.gob")
	if fi, err := os.Stat(snapshot); err != nil || fi.Size() == 0 {
		t.Fatalf("no snapshot after the stop: %v\n%s", err, relTail(s.c.Logs(), 30))
	}
	s.c.Restart(t)
	if !strings.Contains(s.c.Logs(), "directory snapshot loaded") {
		t.Fatalf("the restarted instance did not load the snapshot:\n%s", relTail(s.c.Logs(), 30))
	}
	st, r := s.readiness(t)
	if st != http.StatusOK || r["directory"] != "restored" {
		t.Fatalf("readiness after a restart during the outage: %d %v, want 200 with the directory restored", st, r)
	}
	s.wantRoutes(t, "restarted, database still stopped", known)
	s.capture(t, "restarted, database still stopped")
	if raw, err := os.ReadFile(snapshot); err != nil || strings.Contains(string(raw), "ghs_outage_token") {
		t.Fatalf("the snapshot holds the integration's token (or is unreadable: %v)", err)
	}
	if n := s.stale(t, "organization"); n < 2 {
		t.Fatalf("after the restart %v organization lookups were answered stale, want 2", n)
	}
	status, _ := s.get(t, "/api/0/organizations/gamma/projects/")
	if status != http.StatusServiceUnavailable {
		t.Fatalf("unknown organization after the restart: %d, want 503", status)
	}

	// The database is back and acme moved: the first lookup asks it, and
	// its answer wins over the last good one.
	if err := s.cluster.Start(); err != nil {
		t.Fatal(err)
	}
	mustExec(t, s.control, `UPDATE sentry_organizationmapping SET region_name = 'de' WHERE slug = 'acme'`)
	back := time.Now()
	waitFor(t, "the changed mapping", 30*time.Second, func() bool {
		_, body := s.get(t, "/api/0/organizations/acme/projects/")
		return body == "hello from de"
	})
	took := time.Since(back)
	if !strings.Contains(s.c.Logs(), "directory database answers again") {
		t.Errorf("the database's return was not logged:\n%s", relTail(s.c.Logs(), 30))
	}
	t.Logf("changed mapping seen %s after the database came back (TTL %s)", took, outageTTL)
	if took > outageTTL {
		t.Errorf("the changed mapping took %s, more than the TTL %s", took, outageTTL)
	}
	before = s.stale(t, "organization")
	s.wantRoutes(t, "database back", map[string]string{"/api/0/organizations/acme/projects/": "de", "/api/0/organizations/beta/projects/": "de"})
	if after := s.stale(t, "organization"); after != before {
		t.Fatalf("stale answers went from %v to %v with the database up", before, after)
	}
}

// Readiness answers 503, with the reasons, until the storage migrations
// ran and the directory's database answered once; then 200. Liveness
// answers 200 throughout; other paths, Sentry's own /_health/ included,
// go on to the next handler.
func TestReadinessWaitsForStorageAndDirectory(t *testing.T) {
	tests := []struct {
		name        string
		storage     string // newOutageSetup's
		wantStorage string // before the database starts
		wantReasons []string
	}{
		{name: "storage and directory on the stopped database", storage: "postgres", wantStorage: "migrating",
			wantReasons: []string{"storage migrations have not run", "directory's database has not answered"}},
		{name: "directory on the stopped database", wantStorage: "migrated",
			wantReasons: []string{"directory's database has not answered"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newOutageSetup(t, tc.storage, true)
			status, r := s.readiness(t)
			if status != http.StatusServiceUnavailable || r["ready"] != false || r["storage"] != tc.wantStorage || r["directory"] != "waiting" {
				t.Fatalf("readiness with the database stopped: %d %v", status, r)
			}
			reasons := fmt.Sprint(r["reasons"])
			for _, want := range tc.wantReasons {
				if !strings.Contains(reasons, want) {
					t.Errorf("reasons %s lack %q", reasons, want)
				}
			}
			if len(r["reasons"].([]any)) != len(tc.wantReasons) {
				t.Errorf("reasons %s, want only %q", reasons, tc.wantReasons)
			}
			if status, body := s.get(t, "/_silo/health"); status != http.StatusOK || body != "{\"status\":\"ok\"}\n" {
				t.Fatalf("liveness: %d %q", status, body)
			}
			if status, body := s.get(t, "/_health/"); status != http.StatusOK || body != "hello from control" {
				t.Fatalf("Sentry's /_health/: %d %q, want it passed on to the control silo", status, body)
			}
			req, _ := http.NewRequest(http.MethodPost, s.base+"/_silo/ready", nil)
			resp, err := s.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
				t.Fatalf("POST /_silo/ready: %d Allow %q, want 405 GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
			}

			if err := s.cluster.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "readiness once the database is up", 60*time.Second, func() bool {
				status, _ := s.readiness(t)
				return status == http.StatusOK
			})
			if _, r := s.readiness(t); r["storage"] != "migrated" || r["directory"] != "answered" || r["reasons"] != nil {
				t.Fatalf("readiness when ready: %v", r)
			}
		})
	}
}

// freeze stops the cluster's postmaster and its backends (SIGSTOP), as a
// network partition does: connections stay open and connects are accepted
// by the kernel, but nothing answers. thaw (also at cleanup) resumes them.
func freeze(t *testing.T, c *pgtest.Cluster) (thaw func()) {
	t.Helper()
	pid := c.ServerPID()
	if pid == 0 {
		t.Fatal("the cluster is not running")
	}
	pids := []int{pid}
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(children)) {
		var p int
		if _, err := fmt.Sscan(f, &p); err == nil {
			pids = append(pids, p)
		}
	}
	for _, p := range pids {
		if err := syscall.Kill(p, syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP %d: %v", p, err)
		}
	}
	done := false
	thaw = func() {
		if done {
			return
		}
		done = true
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGCONT)
		}
	}
	t.Cleanup(thaw)
	return thaw
}

// A database that hangs rather than refuses (a partition): once a kind of
// lookup has timed out, the known organizations are answered from their
// last good answers without waiting for the 5 s query timeout again; when
// the database answers again, a changed mapping is seen within the TTL.
func TestDirectoryPartitionAnswersStaleWithoutWaiting(t *testing.T) {
	s := newOutageSetup(t, "", false)
	waitFor(t, "readiness", 30*time.Second, func() bool { st, _ := s.readiness(t); return st == http.StatusOK })
	s.wantRoutes(t, "database up", known)

	thaw := freeze(t, s.cluster)
	frozen := time.Now()
	// The first lookup of each kind past the TTL waits for its query's
	// timeout, then takes the last good answer.
	waitFor(t, "stale answers", 60*time.Second, func() bool {
		s.wantRoutes(t, "database frozen", known)
		return s.stale(t, "organization") >= 2 && s.stale(t, "project_key") >= 1 && s.stale(t, "sentry_app_installation") >= 1
	})
	t.Logf("every kind answered stale %s after the freeze", time.Since(frozen).Round(time.Millisecond))
	// From then on no request waits for the timeout: at most failingWait
	// (250 ms) for a new query each second. The bound is half the 5 s
	// query timeout, so it tells the two apart with room for a loaded
	// machine.
	const bound = 2500 * time.Millisecond
	var slowest time.Duration
	timed := time.Now()
	for range 20 {
		for path, region := range known {
			start := time.Now()
			if status, body := s.get(t, path); status != http.StatusOK || body != "hello from "+region {
				t.Fatalf("database frozen: GET %s = %d %q", path, status, body)
			}
			slowest = max(slowest, time.Since(start))
		}
	}
	t.Logf("slowest of %d requests with the database frozen: %s; all of them: %s", 20*len(known), slowest, time.Since(timed).Round(time.Millisecond))
	if slowest > bound {
		t.Fatalf("a request with the database frozen took %s, want under %s (the query timeout is 5 s)", slowest, bound)
	}

	thaw()
	mustExec(t, s.control, `UPDATE sentry_organizationmapping SET region_name = 'de' WHERE slug = 'acme'`)
	back := time.Now()
	waitFor(t, "the changed mapping", 30*time.Second, func() bool {
		_, body := s.get(t, "/api/0/organizations/acme/projects/")
		return body == "hello from de"
	})
	took := time.Since(back)
	t.Logf("changed mapping seen %s after the database answered again", took.Round(time.Millisecond))
	if took > outageTTL+5*time.Second {
		t.Errorf("the changed mapping took %s after the database answered again, more than the TTL %s plus a query timeout", took, outageTTL)
	}
}
