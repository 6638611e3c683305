package integration_tests

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// The reliability scenarios capture Bitbucket webhooks: the organization id
// in the path picks the region through the static directory entries of the
// Caddyfile, so the only database work is the payload itself (what the
// scenarios are about). Each webhook carries a unique marker, as its
// X-Request-UUID (Bitbucket's delivery id) and in its body, so every
// accepted webhook can be followed row by row into the payload table and
// into what the fake region received.

// relRegion is a fake region on a fixed loopback port that can go down
// (nothing listens: connection refused) and come back on the same port. It
// answers gateway requests (/api/...) with its name and records webhook
// deliveries by marker, in arrival order per request path (one path per
// organization, so per mailbox).
type relRegion struct {
	name string
	port *harness.Port

	mu     sync.Mutex
	srv    *http.Server
	counts map[string]int
	order  map[string][]string
	// gatewaySeen holds the m query parameter of gateway requests.
	gatewaySeen map[string]bool
	gateway     atomic.Int64
	delay       atomic.Int64
	rejected    atomic.Int64 // deliveries without a marker
	open        atomic.Int64 // connections open from the binary
	conns       sync.Map     // net.Conn → *atomic.Value holding the last request kind
}

type relConnKey struct{}

// openConnections counts the binary's open connections to the region by
// what they last carried: "gateway", "delivery" or "" (nothing yet).
func (r *relRegion) openConnections() map[string]int {
	out := map[string]int{}
	r.conns.Range(func(_, v any) bool {
		kind, _ := v.(*atomic.Value).Load().(string)
		out[kind]++
		return true
	})
	return out
}

func newRelRegion(t *testing.T, name string, up bool) *relRegion {
	t.Helper()
	r := &relRegion{
		name:        name,
		port:        harness.ReservePort(t),
		counts:      map[string]int{},
		order:       map[string][]string{},
		gatewaySeen: map[string]bool{},
	}
	if up {
		r.up(t)
	}
	t.Cleanup(r.down)
	return r
}

func (r *relRegion) url() string { return r.port.URL() }

func (r *relRegion) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	_, _ = io.Copy(io.Discard, req.Body)
	if d := r.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	kind, _ := req.Context().Value(relConnKey{}).(*atomic.Value)
	if strings.HasPrefix(req.URL.Path, "/api/") {
		if kind != nil {
			kind.Store("gateway")
		}
		r.gateway.Add(1)
		if m := req.URL.Query().Get("m"); m != "" {
			r.mu.Lock()
			r.gatewaySeen[m] = true
			r.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"region":%q}`, r.name)
		return
	}
	if kind != nil {
		kind.Store("delivery")
	}
	marker := req.Header.Get("X-Request-Uuid")
	if marker == "" {
		r.rejected.Add(1)
		w.WriteHeader(http.StatusOK)
		return
	}
	r.mu.Lock()
	r.counts[marker]++
	r.order[req.URL.Path] = append(r.order[req.URL.Path], marker)
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// up starts listening on the region's port, which stays reserved for the
// test while the region is down.
func (r *relRegion) up(t *testing.T) {
	t.Helper()
	l, err := r.port.Listen()
	if err != nil {
		t.Fatalf("region %s cannot listen on %s: %v", r.name, r.port.Addr, err)
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, ConnState: func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			r.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			r.open.Add(-1)
			r.conns.Delete(c)
		}
	}, ConnContext: func(ctx context.Context, c net.Conn) context.Context {
		// ConnContext runs before the StateNew hook.
		v := new(atomic.Value)
		v.Store("")
		r.conns.Store(c, v)
		return context.WithValue(ctx, relConnKey{}, v)
	}}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

// down closes the listener and every connection: deliveries are refused.
func (r *relRegion) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
		r.open.Store(0)
		r.conns.Clear()
	}
}

// delivered returns how often each marker was delivered.
func (r *relRegion) delivered() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.counts))
	for k, v := range r.counts {
		out[k] = v
	}
	return out
}

// sawGateway reports whether a gateway request with ?m=marker arrived.
func (r *relRegion) sawGateway(marker string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gatewaySeen[marker]
}

// arrivals returns the markers received on one request path, in order.
func (r *relRegion) arrivals(path string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.order[path]...)
}

// relConfig is the Caddyfile of one reliability instance: capture and the
// gateway in front of a "control" responder, static organizations 1..orgs
// in region us, the drainer tuned for tests.
type relConfig struct {
	admin   *harness.Port
	site    *harness.Port
	storage string // storage line value; "" keeps the embedded default
	region  string // URL of region us
	orgs    int
	drainer string // more lines inside drainer { }
	route   string // lines inside sentry_region_route { }
}

func (c relConfig) caddyfile() string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\n%s\tsentry_silo {\n", harness.GlobalOptions(c.admin))
	if c.storage != "" {
		fmt.Fprintf(&b, "\t\tstorage %s\n", c.storage)
	}
	fmt.Fprintf(&b, "\t\tregion us %s\n\t\tdirectory_cache 1s 1s\n", c.region)
	for i := 1; i <= c.orgs; i++ {
		fmt.Fprintf(&b, "\t\torganization %d org-%d us\n", i, i)
	}
	fmt.Fprintf(&b, "\t\tdrainer {\n\t\t\tpoll_interval 200ms\n\t\t\tlease 2s\n\t\t\tregion_breaker 3 200ms\n\t\t\tbackoff 100ms 1.5 1s\n%s\t\t}\n\t}\n}\n", c.drainer)
	fmt.Fprintf(&b, "http://%s {\n\troute {\n\t\tsentry_webhook_capture\n\t\tsentry_region_route {\n%s\t\t}\n\t\trespond \"control\" 200\n\t}\n}\n", c.site.Addr, c.route)
	return b.String()
}

func newRelConfig(t *testing.T, storage, region string, orgs int) relConfig {
	return relConfig{
		admin:   harness.ReservePort(t),
		site:    harness.ReservePort(t),
		storage: storage,
		region:  region,
		orgs:    orgs,
	}
}

func (c relConfig) base() string { return c.site.URL() }

// relHookPath is the Bitbucket capture path of organization org (mailbox
// bitbucket:us:<org>, a skip-on-failure provider). The drainer delivers to
// the same path, so it also names the mailbox at the region.
func relHookPath(org int) string {
	return fmt.Sprintf("/extensions/bitbucket/organizations/%d/webhook/", org)
}

// relPluginPath is the legacy Bitbucket plugin path of organization org
// (mailbox plugins:us:<org>, a strict FIFO provider).
func relPluginPath(org int) string {
	return fmt.Sprintf("/plugins/bitbucket/organizations/%d/webhook/", org)
}

// relCapture posts one Bitbucket push for organization org with this
// marker and returns the status (0 with an error when no answer came).
func relCapture(ctx context.Context, client *http.Client, base string, org int, marker string) (int, error) {
	return relCaptureAt(ctx, client, base, relHookPath(org), marker)
}

// relCaptureAt is relCapture on any Bitbucket-shaped webhook path.
func relCaptureAt(ctx context.Context, client *http.Client, base, path, marker string) (int, error) {
	body := fmt.Sprintf(`{"marker":%q,"push":{"changes":[{"new":{"name":"main"}}]},"repository":{"uuid":"{r-%s}"}}`, marker, marker)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Event-Key", "repo:push")
	req.Header.Set("X-Request-UUID", marker)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// relResult is the fate of one request of a load generator.
type relResult struct {
	marker     string
	status     int
	err        error
	start, end time.Time
}

// relLoad runs workers that call send with fresh markers until stopped (or
// until each has sent max requests), and keeps every result.
type relLoad struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	results []relResult
	sent    atomic.Int64
	failed  atomic.Int64 // sends that got no answer
}

func startRelLoad(workers, max int, prefix string, send func(worker int, marker string) (int, error)) *relLoad {
	l := &relLoad{stop: make(chan struct{})}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; i < max; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				marker := fmt.Sprintf("%s-%d-%d", prefix, w, i)
				start := time.Now()
				status, err := send(w, marker)
				l.sent.Add(1)
				l.mu.Lock()
				l.results = append(l.results, relResult{marker: marker, status: status, err: err, start: start, end: time.Now()})
				l.mu.Unlock()
				if err != nil {
					l.failed.Add(1)
					// The server is gone (a kill): pace the
					// retries as a sender would, instead of
					// spinning on refused connections.
					select {
					case <-l.stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		}()
	}
	return l
}

// finish stops the workers and returns every result.
func (l *relLoad) finish() []relResult {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]relResult(nil), l.results...)
}

// accepted returns the markers that were answered 202.
func relAccepted(rs []relResult) []string {
	var out []string
	for _, r := range rs {
		if r.status == http.StatusAccepted {
			out = append(out, r.marker)
		}
	}
	return out
}

// relStatusCounts summarises results for messages: "202:310 503:12 err:3".
func relStatusCounts(rs []relResult) string {
	counts := map[string]int{}
	for _, r := range rs {
		k := strconv.Itoa(r.status)
		if r.err != nil {
			k = "err"
		}
		counts[k]++
	}
	var parts []string
	for _, k := range []string{"202", "503", "err"} {
		if counts[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s:%d", k, counts[k]))
			delete(counts, k)
		}
	}
	for k, v := range counts {
		parts = append(parts, fmt.Sprintf("%s:%d", k, v))
	}
	return strings.Join(parts, " ")
}

// relDB is the test's own connection to the instance's storage.
type relDB struct {
	db *sql.DB
}

func openRelDB(t *testing.T, driver, source string) *relDB {
	t.Helper()
	db, err := sql.Open(driver, source)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(2)
	t.Cleanup(func() { db.Close() })
	return &relDB{db: db}
}

// relSQLiteSource is a read connection to an instance's SQLite file.
func relSQLiteSource(path string) string { return path + "?_pragma=busy_timeout(10000)" }

// storedRow is one payload or dead-letter row, reduced to what the
// scenarios check.
type storedRow struct {
	id       int64
	mailbox  string
	marker   string
	attempts int
	reason   string
}

// payloads reads the whole payload table in id order.
func (d *relDB) payloads(t *testing.T) []storedRow {
	t.Helper()
	return d.read(t, `SELECT id, mailbox_name, request_body, attempts, '' FROM silo_webhook_payload ORDER BY id`)
}

// deadLetters reads the whole dead-letter table in id order.
func (d *relDB) deadLetters(t *testing.T) []storedRow {
	t.Helper()
	return d.read(t, `SELECT id, mailbox_name, request_body, attempts, reason FROM silo_dead_letter ORDER BY id`)
}

func (d *relDB) read(t *testing.T, q string) []storedRow {
	t.Helper()
	var out []storedRow
	var err error
	// The instance may hold the write lock for a moment (SQLite) or the
	// server may have just come back (PostgreSQL): retry briefly.
	if harness.Poll(5*time.Second, func() bool { out, err = d.tryRead(q); return err == nil }) != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

func (d *relDB) tryRead(q string) ([]storedRow, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := d.db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []storedRow
	for rs.Next() {
		var r storedRow
		var body []byte
		if err := rs.Scan(&r.id, &r.mailbox, &body, &r.attempts, &r.reason); err != nil {
			return nil, err
		}
		var m struct {
			Marker string `json:"marker"`
		}
		_ = json.Unmarshal(body, &m)
		r.marker = m.Marker
		out = append(out, r)
	}
	return out, rs.Err()
}

// waitTables waits for the instance's migrations to create our tables.
func (d *relDB) waitTables(t *testing.T, c *harness.Caddy) {
	t.Helper()
	var err error
	if harness.Poll(30*time.Second, func() bool {
		_, err = d.tryRead(`SELECT id, mailbox_name, request_body, attempts, '' FROM silo_webhook_payload WHERE id < 0`)
		return err == nil
	}) != nil {
		t.Fatalf("payload table never appeared: %v\n%s", err, c.Logs())
	}
}

// markers indexes rows by marker.
func markers(rows []storedRow) map[string]int {
	out := map[string]int{}
	for _, r := range rows {
		out[r.marker]++
	}
	return out
}

// relCheckNothingLost checks, marker by marker, that every accepted
// webhook is pending in the payload table or was delivered to the region,
// and that none reached the dead letters.
func relCheckNothingLost(t *testing.T, what string, accepted []string, db *relDB, region *relRegion) (pending, delivered int) {
	t.Helper()
	stored := markers(db.payloads(t))
	dead := db.deadLetters(t)
	got := region.delivered()
	var lost []string
	for _, m := range accepted {
		switch {
		case stored[m] > 0:
			pending++
		case got[m] > 0:
			delivered++
		default:
			lost = append(lost, m)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%s: %d of %d accepted webhooks are neither pending nor delivered, e.g. %v", what, len(lost), len(accepted), lost[:min(5, len(lost))])
	}
	if len(dead) > 0 {
		t.Fatalf("%s: %d dead letters, e.g. %+v", what, len(dead), dead[0])
	}
	return pending, delivered
}

// relWaitDelivered waits until every accepted marker reached the region
// and the payload table is empty.
func relWaitDelivered(t *testing.T, c *harness.Caddy, accepted []string, db *relDB, region *relRegion, timeout time.Duration) {
	t.Helper()
	var missing int
	var example string
	if harness.Poll(timeout, func() bool {
		got := region.delivered()
		missing, example = 0, ""
		for _, m := range accepted {
			if got[m] == 0 {
				missing++
				example = m
			}
		}
		return missing == 0 && len(db.payloads(t)) == 0
	}) != nil {
		rows := db.payloads(t)
		t.Fatalf("after %s: %d of %d accepted webhooks not delivered (e.g. %q), %d rows pending\n%s",
			timeout, missing, len(accepted), example, len(rows), relTail(c.Logs(), 40))
	}
}

// relTail returns the last n lines of s.
func relTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// relGoroutines reads the binary's goroutine count from the admin API's
// pprof endpoint ("goroutine profile: total N").
func relGoroutines(t *testing.T, c *harness.Caddy) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.AdminGet(ctx, "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(body), "\n")
	const prefix = "goroutine profile: total "
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(line, prefix) {
		t.Fatalf("goroutine profile: %d %q", resp.StatusCode, line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, prefix)))
	if err != nil {
		t.Fatalf("goroutine profile: %q", line)
	}
	return n, string(body)
}

// relConnectionReset reports an error of a request whose connection was
// reset or closed before any answer came.
func relConnectionReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// rawExchange writes raw bytes to addr, half-closes the connection when
// closeWrite is set (so a server waiting for more body sees EOF), and
// parses the answer.
func rawExchange(addr string, request []byte, closeWrite bool) (*http.Response, []byte, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := conn.Write(request); err != nil && !errors.Is(err, net.ErrClosed) {
		// The server may answer (431) and close before reading it all.
		if resp, body, rerr := readRawResponse(conn); rerr == nil {
			return resp, body, nil
		}
		return nil, nil, err
	}
	if closeWrite {
		_ = conn.(*net.TCPConn).CloseWrite()
	}
	return readRawResponse(conn)
}

func readRawResponse(conn net.Conn) (*http.Response, []byte, error) {
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body, nil
}

// relSettledGoroutines returns the binary's goroutine count once it has
// stopped changing: the same in 5 readings in a row (harness.Poll spaces
// them 5ms to 100ms apart, so about 200ms without a change), as it is
// once the connections and timers of what came before have wound down.
func relSettledGoroutines(t *testing.T, c *harness.Caddy) int {
	t.Helper()
	last, same := -1, 0
	if harness.Poll(20*time.Second, func() bool {
		n, _ := relGoroutines(t, c)
		if n == last {
			same++
		} else {
			last, same = n, 1
		}
		return same >= 5
	}) != nil {
		t.Fatalf("the goroutine count never settled (last %d)", last)
	}
	return last
}

// relWaitBreakerOpen waits until c's drainer has found region us
// unreachable: deferred deliveries (no attempt spent) of at least
// mailboxes mailboxes, and the region's breaker open. That is what the
// drainer reaches with the region refusing connections; the checks that
// follow look at what it did meanwhile.
func relWaitBreakerOpen(t *testing.T, c *harness.Caddy, mailboxes int) {
	t.Helper()
	waitFor(t, "the drainer to defer deliveries and open region us's breaker", 30*time.Second, func() bool {
		return metricValue(t, c.AdminAddr, "caddy_sentry_deliveries_total", `outcome="deferred",region="us"`) >= float64(mailboxes) &&
			metricValue(t, c.AdminAddr, "caddy_sentry_region_breaker_open", `region="us"`) == 1
	})
}
