package drain

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// recorded is one request a fake region received.
type recorded struct {
	Method string
	URI    string
	Host   string
	Header http.Header
	Body   []byte
}

// fakeRegion is a region server on 127.0.0.1 whose answers a test
// controls. By default it answers 200.
type fakeRegion struct {
	srv *httptest.Server

	mu      sync.Mutex
	reqs    []recorded
	probes  int
	respond func(w http.ResponseWriter, r *http.Request, body []byte) // nil: 200
}

func newFakeRegion(t testing.TB) *fakeRegion { return newFakeServer(t, false) }

// newFakePeer is a fake response_url host: the same server over HTTPS
// (trusted through trustPeer).
func newFakePeer(t testing.TB) *fakeRegion { return newFakeServer(t, true) }

func newFakeServer(t testing.TB, https bool) *fakeRegion {
	f := &fakeRegion{}
	start := httptest.NewServer
	if https {
		start = httptest.NewTLSServer
	}
	f.srv = start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		respond := f.respond
		if r.URL.Path == "/_health/" {
			f.probes++
		} else {
			f.reqs = append(f.reqs, recorded{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(), Body: body})
		}
		f.mu.Unlock()
		if respond == nil {
			w.WriteHeader(http.StatusOK)
			return
		}
		respond(w, r, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeRegion) set(respond func(w http.ResponseWriter, r *http.Request, body []byte)) {
	f.mu.Lock()
	f.respond = respond
	f.mu.Unlock()
}

func (f *fakeRegion) status(code int) {
	f.set(func(w http.ResponseWriter, r *http.Request, body []byte) { w.WriteHeader(code) })
}

func (f *fakeRegion) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func (f *fakeRegion) bodies() []string {
	var out []string
	for _, r := range f.requests() {
		out = append(out, string(r.Body))
	}
	return out
}

func (f *fakeRegion) probeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.probes
}

func (f *fakeRegion) url() *url.URL {
	u, _ := url.Parse(f.srv.URL)
	return u
}

// testStore is what the tests need of an engine: the drainer's Store, and
// the capture and operator side they set rows up and look at them with.
type testStore interface {
	Store
	Engine() string
	InsertPayloads(ctx context.Context, payloads []store.NewPayload) ([]store.InsertResult, error)
	DeadLetters(ctx context.Context, limit int, after int64) ([]store.DeadLetter, error)
	ReplayDeadLetter(ctx context.Context, id int64, now time.Time) (int64, error)
}

// scanCounter counts the backstop scans (DueMailboxes calls that
// returned) of one drainer, so that a test can let poll rounds go by
// without sleeping.
type scanCounter struct {
	Store
	n atomic.Int64
}

func (s *scanCounter) DueMailboxes(ctx context.Context, now time.Time, limit int, skip []string) ([]string, error) {
	defer s.n.Add(1)
	return s.Store.DueMailboxes(ctx, now, limit, skip)
}

// countScans wraps st in a scanCounter, keeping its LISTEN (PostgreSQL).
func countScans(st Store) (Store, *scanCounter) {
	c := &scanCounter{Store: st}
	if l, ok := st.(listener); ok {
		return struct {
			*scanCounter
			listener
		}{c, l}, c
	}
	return c, c
}

// fixture runs a drainer over a store with fake regions "us" and "de".
type fixture struct {
	t       testing.TB
	st      testStore
	us, de  *fakeRegion
	regions map[string]*url.URL
	offset  atomic.Int64 // added to the drainer's clock
	reg     *prometheus.Registry
	metrics *Metrics
	scans   map[*Drainer]*scanCounter
}

func newFixture(t testing.TB, st testStore) *fixture {
	f := &fixture{t: t, st: st, us: newFakeRegion(t), de: newFakeRegion(t), reg: prometheus.NewRegistry(),
		scans: make(map[*Drainer]*scanCounter)}
	f.regions = map[string]*url.URL{"us": f.us.url(), "de": f.de.url()}
	f.metrics = NewMetrics()
	f.metrics.Register(f.reg)
	return f
}

func (f *fixture) now() time.Time { return time.Now().Add(time.Duration(f.offset.Load())) }

// fastConfig is a test config: quick polls, tiny backoff, short leases.
func (f *fixture) fastConfig() Config {
	return Config{
		PollInterval:         20 * time.Millisecond,
		Workers:              8,
		BackoffBase:          3 * time.Minute,
		RequestTimeout:       2 * time.Second,
		BreakerProbeInterval: 50 * time.Millisecond,
		Lease:                2 * time.Second,
		StopGrace:            200 * time.Millisecond,
		GaugeInterval:        50 * time.Millisecond,
		Now:                  f.now,
	}
}

func (f *fixture) newDrainer(cfg Config) *Drainer {
	if cfg.Now == nil {
		cfg.Now = f.now
	}
	var logger *zap.Logger
	if tt, ok := f.t.(*testing.T); ok {
		logger = zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel))
	}
	st, scans := countScans(f.st)
	d := New(cfg, st, func(name string) (*url.URL, bool) {
		u, ok := f.regions[name]
		return u, ok
	}, logger, f.metrics)
	f.scans[d] = scans
	return d
}

// waitScans waits until d has made n more backstop scans: n poll rounds in
// which it looked for due mailboxes and handed out what it found (the
// rounds are the poll interval apart, or sooner when woken).
func (f *fixture) waitScans(d *Drainer, n int) {
	f.t.Helper()
	c := f.scans[d]
	target := c.n.Load() + int64(n)
	waitFor(f.t, fmt.Sprintf("%d more scans", n), 30*time.Second, func() bool { return c.n.Load() >= target })
}

// run starts d and stops it at cleanup, failing when Run does not return
// within a bound. It returns a stop function that does the same at once.
func (f *fixture) run(d *Drainer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				f.t.Errorf("Run did not return within 5s of cancel")
			}
		})
	}
	f.t.Cleanup(stop)
	return stop
}

// insert stores payloads for a mailbox of the newest form
// provider:region:subject, bodies "<subject>#<n>".
func (f *fixture) insert(provider, region, subject string, n int) []int64 {
	f.t.Helper()
	var ps []store.NewPayload
	for i := 0; i < n; i++ {
		ps = append(ps, newPayload(provider, region, subject, i))
	}
	res, err := f.st.InsertPayloads(context.Background(), ps)
	if err != nil {
		f.t.Fatalf("insert: %v", err)
	}
	ids := make([]int64, len(res))
	for i, r := range res {
		ids[i] = r.ID
	}
	return ids
}

func mailboxName(provider, region, subject string) string {
	return provider + ":" + region + ":" + subject
}

func newPayload(provider, region, subject string, i int) store.NewPayload {
	return store.NewPayload{
		MailboxName: mailboxName(provider, region, subject),
		Provider:    provider,
		Region:      region,
		Method:      http.MethodPost,
		Path:        "/extensions/" + provider + "/webhook/?n=" + fmt.Sprint(i),
		Headers:     http.Header{"Content-Type": {"application/json"}, "X-Seq": {fmt.Sprint(i)}},
		Body:        []byte(fmt.Sprintf("%s#%d", subject, i)),
	}
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) pending() int {
	boxes, err := f.st.Mailboxes(context.Background(), f.now())
	if err != nil {
		f.t.Fatalf("mailboxes: %v", err)
	}
	n := 0
	for _, b := range boxes {
		n += int(b.Depth)
	}
	return n
}

func (f *fixture) deadLetters() []store.DeadLetter {
	dls, err := f.st.DeadLetters(context.Background(), 10000, 0)
	if err != nil {
		f.t.Fatalf("dead letters: %v", err)
	}
	return dls
}

// payload reads one pending row through the store's interface.
func (f *fixture) payload(mailbox string, id int64) (store.Payload, bool) {
	rows, err := f.st.NextPayloads(context.Background(), mailbox, id-1, f.now(), false, 1)
	if err != nil {
		f.t.Fatalf("next payloads: %v", err)
	}
	if len(rows) == 0 || rows[0].ID != id {
		return store.Payload{}, false
	}
	return rows[0], true
}

func (f *fixture) deliveries(region, outcome string) float64 {
	var m dto.Metric
	if err := f.metrics.Deliveries.WithLabelValues(region, outcome).Write(&m); err != nil {
		f.t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
