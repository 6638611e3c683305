package integration_tests

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

// drainRegion is a fake region that records webhook deliveries by their
// X-GitHub-Delivery id. down makes it answer 503 to everything, probes
// included (counted in refused); delay slows every answer.
type drainRegion struct {
	srv     *httptest.Server
	mu      sync.Mutex
	counts  map[string]int
	order   []string
	down    atomic.Bool
	refused atomic.Int64
	status  atomic.Int32 // 0: 200
	delay   atomic.Int64
	// other answers requests that are not GitHub deliveries, when set.
	other atomic.Pointer[http.HandlerFunc]
}

func newDrainRegion(t *testing.T) *drainRegion {
	r := &drainRegion{counts: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		if d := r.delay.Load(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		if r.down.Load() {
			r.refused.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if h := r.other.Load(); h != nil && req.Header.Get("X-Github-Delivery") == "" {
			(*h)(w, req)
			return
		}
		if id := req.Header.Get("X-Github-Delivery"); id != "" {
			if s := r.status.Load(); s != 0 {
				w.WriteHeader(int(s))
				return
			}
			r.mu.Lock()
			r.counts[id]++
			r.order = append(r.order, id)
			r.mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *drainRegion) delivered() (distinct, total int, dups []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, n := range r.counts {
		total += n
		if n > 1 {
			dups = append(dups, id)
		}
	}
	return len(r.counts), total, dups
}

// drainSetup is a storage database (SQLite unless dsn is set) with the
// directory rows for GitHub installations 1..n, all in organization acme
// (region us).
type drainSetup struct {
	storage string // the storage line of the Caddyfile
	driver  string
	source  string
	db      *sql.DB
	us      *drainRegion
}

func newDrainSetup(t *testing.T) *drainSetup {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binary; left out under -short")
	}
	path := filepath.Join(t.TempDir(), "silo.db")
	return &drainSetup{
		storage: "sqlite " + path,
		driver:  "sqlite",
		source:  path + "?_pragma=busy_timeout(10000)",
		us:      newDrainRegion(t),
	}
}

// newDrainSetupPostgres is the same on a fresh PostgreSQL database, which
// several instances can share.
func newDrainSetupPostgres(t *testing.T) *drainSetup {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binary on PostgreSQL; left out under -short")
	}
	dsn := pgtest.DSN(t)
	return &drainSetup{storage: "postgres " + dsn, driver: "pgx", source: dsn, us: newDrainRegion(t)}
}

// seed waits for the first instance's migrations, then adds the directory
// rows.
func (s *drainSetup) seed(t *testing.T, installations int) {
	t.Helper()
	db, err := sql.Open(s.driver, s.source)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s.db = db
	waitForTables(t, db, 30*time.Second, nil, "sentry_organizationintegration", "silo_webhook_payload")
	mustExec(t, db, `INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES (1, 'acme', 'us', 0)`)
	for i := 1; i <= installations; i++ {
		mustExec(t, db, fmt.Sprintf(`INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES (%d, 'github', '%d', 'gh', '{}', 0)`, i, 5000+i))
		mustExec(t, db, fmt.Sprintf(`INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES (%d, 1, %d, 0)`, i, i))
	}
}

func (s *drainSetup) pending(t *testing.T) int {
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM silo_webhook_payload`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (s *drainSetup) caddyfile(admin, site *harness.Port, drainer string) string {
	return fmt.Sprintf(`{
%s	sentry_silo {
		storage %s
		region us %s
		directory_cache 1s 1s
		drainer {
			poll_interval 200ms
			lease 2s
			region_breaker 3 200ms
%s
		}
	}
}
http://%s {
	route {
		sentry_webhook_capture
		respond "control" 200
	}
}
`, harness.GlobalOptions(admin), s.storage, s.us.srv.URL, drainer, site.Addr)
}

type drainInstance struct {
	c    *harness.Caddy
	base string
}

func (s *drainSetup) start(t *testing.T, drainer string) *drainInstance {
	t.Helper()
	admin, site := harness.ReservePort(t), harness.ReservePort(t)
	c := harness.Start(t, admin, s.caddyfile(admin, site, drainer))
	return &drainInstance{c: c, base: site.URL()}
}

var drainClient = &http.Client{Timeout: 10 * time.Second}

// capture posts one GitHub push for installation inst, delivery id id.
func (in *drainInstance) capture(t *testing.T, inst int, id string) {
	t.Helper()
	if err := in.tryCapture(inst, id); err != nil {
		t.Fatal(err)
	}
}

func (in *drainInstance) tryCapture(inst int, id string) error {
	body := fmt.Sprintf(`{"installation":{"id":%d},"repository":{"id":%d},"delivery":%q}`, 5000+inst, inst, id)
	req, _ := http.NewRequest(http.MethodPost, in.base+"/extensions/github/webhook/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", id)
	resp, err := drainClient.Do(req)
	if err != nil {
		return fmt.Errorf("capture %s: %v", id, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("capture %s: %d %s\n%s", id, resp.StatusCode, b, in.c.Logs())
	}
	return nil
}

func (in *drainInstance) admin(t *testing.T, method, path string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+in.c.AdminAddr+path, nil)
	req.Header.Set("Origin", "http://"+in.c.AdminAddr)
	resp, err := drainClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(b), &out); err != nil {
		t.Fatalf("%s %s: %d %q", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

// Two Caddy processes on one PostgreSQL database, captures spread over
// both: every webhook is delivered exactly once.
func TestDrainTwoInstances(t *testing.T) {
	s := newDrainSetupPostgres(t)
	a := s.start(t, "")
	s.seed(t, 10)
	b := s.start(t, "")
	const n = 400
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				in := a
				if i%2 == 1 {
					in = b
				}
				if err := in.tryCapture(1+i%10, fmt.Sprint("two-", i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "every webhook delivered", 60*time.Second, func() bool { d, _, _ := s.us.delivered(); return d == n })
	waitFor(t, "mailboxes empty", 10*time.Second, func() bool { return s.pending(t) == 0 })
	// A duplicate could still be on its way; none can once both
	// processes have exited and the region's handlers have returned
	// (httptest's Close waits for them).
	a.c.Stop()
	b.c.Stop()
	s.us.srv.Close()
	if d, total, dups := s.us.delivered(); d != n || total != n {
		t.Fatalf("delivered %d distinct, %d in all (duplicates %v)", d, total, dups)
	}
}

// kill -9 in the middle of a drain, then restart: everything is delivered
// at least once.
func TestDrainKillRestart(t *testing.T) {
	s := newDrainSetup(t)
	s.us.delay.Store(int64(20 * time.Millisecond))
	a := s.start(t, "\t\t\tworkers 2")
	s.seed(t, 2)
	const n = 200
	for i := 0; i < n; i++ {
		a.capture(t, 1+i%2, fmt.Sprint("kill-", i))
	}
	waitFor(t, "drain under way", 30*time.Second, func() bool { d, _, _ := s.us.delivered(); return d >= 20 })
	a.c.Kill()
	if d, _, _ := s.us.delivered(); d == n {
		t.Fatal("drained before the kill; slow the region down")
	}
	a.c.Restart(t)
	waitFor(t, "every webhook delivered after the restart", 60*time.Second, func() bool { d, _, _ := s.us.delivered(); return d == n })
	waitFor(t, "mailboxes empty", 10*time.Second, func() bool { return s.pending(t) == 0 })
	_, total, dups := s.us.delivered()
	t.Logf("%d deliveries for %d webhooks (%d delivered twice: in flight at the kill)", total, n, len(dups))
}

// A region down for a while: nothing spends an attempt or reaches the dead
// letters; once it is back, everything is delivered. The admin API shows
// the backlog meanwhile.
func TestDrainRegionDownThenUp(t *testing.T) {
	s := newDrainSetup(t)
	s.us.down.Store(true)
	a := s.start(t, "\t\t\tmax_attempts 2")
	s.seed(t, 3)
	const n = 60
	for i := 0; i < n; i++ {
		a.capture(t, 1+i%3, fmt.Sprint("down-", i))
	}
	// Give the drainer many chances to spend an attempt: the breaker
	// opens after 3 refusals (region_breaker 3 200ms), then a probe
	// every 200ms; 12 refusals are many probes past that (the region
	// refused 12 or 13 in the 2s this test used to sleep).
	waitFor(t, "12 deliveries refused by the region", 30*time.Second, func() bool { return s.us.refused.Load() >= 12 })
	if status, out := a.admin(t, "GET", "/sentry_silo/regions"); status != 200 ||
		fmt.Sprint(out["regions"]) != "[map[breaker_open:true name:us paused:<nil>]]" {
		t.Fatalf("regions while us is down: %d %v", status, out)
	}
	status, out := a.admin(t, "GET", "/sentry_silo/mailboxes")
	boxes, _ := out["mailboxes"].([]any)
	if status != 200 || len(boxes) != 3 {
		t.Fatalf("mailboxes: %d %v", status, out)
	}
	for _, b := range boxes {
		m := b.(map[string]any)
		if m["head_attempts"].(float64) != 0 || m["region"] != "us" {
			t.Fatalf("mailbox %v spent attempts while the region was down", m)
		}
	}
	if _, out := a.admin(t, "GET", "/sentry_silo/dead_letters"); len(out["dead_letters"].([]any)) != 0 {
		t.Fatalf("dead letters while the region was down: %v", out)
	}
	s.us.down.Store(false)
	waitFor(t, "backlog delivered", 30*time.Second, func() bool { d, _, _ := s.us.delivered(); return d == n })
	waitFor(t, "mailboxes empty", 10*time.Second, func() bool { return s.pending(t) == 0 })
	if _, out := a.admin(t, "GET", "/sentry_silo/dead_letters"); len(out["dead_letters"].([]any)) != 0 {
		t.Fatalf("dead letters: %v", out)
	}
	if _, out := a.admin(t, "GET", "/sentry_silo/regions"); fmt.Sprint(out["regions"]) != "[map[breaker_open:false name:us paused:<nil>]]" {
		t.Fatalf("regions after recovery: %v", out)
	}
}

// A reload in the middle of a drain loses nothing: the old and new
// drainers hand mailboxes over through their leases.
func TestDrainReloadDuringDrain(t *testing.T) {
	s := newDrainSetup(t)
	s.us.delay.Store(int64(10 * time.Millisecond))
	admin, site := harness.ReservePort(t), harness.ReservePort(t)
	c := harness.Start(t, admin, s.caddyfile(admin, site, "\t\t\tworkers 4"))
	in := &drainInstance{c: c, base: site.URL()}
	s.seed(t, 4)
	const n = 300
	for i := 0; i < n; i++ {
		in.capture(t, 1+i%4, fmt.Sprint("reload-", i))
	}
	waitFor(t, "drain under way", 30*time.Second, func() bool { d, _, _ := s.us.delivered(); return d >= 20 })
	c.Reload(t, s.caddyfile(admin, site, "\t\t\tworkers 8"))
	waitFor(t, "every webhook delivered across the reload", 60*time.Second, func() bool { d, _, _ := s.us.delivered(); return d == n })
	waitFor(t, "mailboxes empty", 10*time.Second, func() bool { return s.pending(t) == 0 })
	_, total, dups := s.us.delivered()
	if len(dups) > 8 {
		t.Fatalf("%d duplicates across one reload (%d deliveries)", len(dups), total)
	}
}

// A region that rejects a webhook sends it to the dead letters; the admin
// API lists it and replays it, and the replay is delivered.
func TestDrainDeadLetterReplay(t *testing.T) {
	s := newDrainSetup(t)
	s.us.status.Store(404)
	a := s.start(t, "")
	s.seed(t, 1)
	a.capture(t, 1, "dl-1")
	var id float64
	waitFor(t, "dead letter", 20*time.Second, func() bool {
		_, out := a.admin(t, "GET", "/sentry_silo/dead_letters?limit=10")
		dls, _ := out["dead_letters"].([]any)
		if len(dls) != 1 {
			return false
		}
		dl := dls[0].(map[string]any)
		if dl["reason"] != "dropped_404" || dl["region"] != "us" || dl["provider"] != "github" {
			t.Fatalf("dead letter %v", dl)
		}
		id = dl["id"].(float64)
		return true
	})
	s.us.status.Store(0)
	if status, out := a.admin(t, "POST", fmt.Sprintf("/sentry_silo/dead_letters/%d/replay", int64(id))); status != 200 {
		t.Fatalf("replay: %d %v", status, out)
	}
	waitFor(t, "replay delivered", 20*time.Second, func() bool { d, _, _ := s.us.delivered(); return d == 1 })
	if status, _ := a.admin(t, "POST", fmt.Sprintf("/sentry_silo/dead_letters/%d/replay", int64(id))); status != 404 {
		t.Fatalf("second replay: %d", status)
	}
	if status, _ := a.admin(t, "POST", "/sentry_silo/mailboxes/github%3Aus%3Anone/retry"); status != 404 {
		t.Fatalf("retry of an empty mailbox: %d", status)
	}
	if status, _ := a.admin(t, "GET", "/sentry_silo/dead_letters?limit=zero"); status != 400 {
		t.Fatalf("bad limit: %d", status)
	}
}
