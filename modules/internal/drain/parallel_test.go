package drain

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// The parallel-delivery cases join the engine suite (memory, SQLite,
// PostgreSQL).
func init() {
	suite = append(suite, []struct {
		name string
		fn   func(t *testing.T, newStore storeFactory)
	}{
		{"ParallelDeliversOnce", testParallelDeliversOnce},
		{"StrictStaysSerial", testStrictStaysSerial},
		{"ParallelFailureRetriedAlone", testParallelFailureRetriedAlone},
		{"ParallelLeaseLost", testParallelLeaseLost},
		{"ParallelStopIsBounded", testParallelStopIsBounded},
		{"TwoDrainersExclusiveParallel", testTwoDrainersExclusiveParallel},
	}...)
}

// gate is a fake region's handler that counts the requests in flight. Each
// request waits until want of them are in flight at once, or until open
// is called; after that they are answered at once.
type gate struct {
	want int

	mu        sync.Mutex
	cur, max  int
	bodies    map[string]int
	opened    chan struct{}
	closeOnce sync.Once
}

func newGate(t *testing.T, want int) *gate {
	g := &gate{want: want, bodies: map[string]int{}, opened: make(chan struct{})}
	// Before the fake region's own cleanup (registered earlier, run
	// later), which waits for its handlers.
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.closeOnce.Do(func() { close(g.opened) }) }

func (g *gate) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	g.mu.Lock()
	g.cur++
	g.max = max(g.max, g.cur)
	g.bodies[string(body)]++
	g.mu.Unlock()
	for {
		g.mu.Lock()
		full := g.cur >= g.want
		g.mu.Unlock()
		if full {
			break
		}
		select {
		case <-g.opened:
		case <-r.Context().Done():
		case <-time.After(time.Millisecond): // re-check the count
			continue
		}
		break
	}
	g.mu.Lock()
	g.cur--
	g.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (g *gate) maxInFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.max
}

// waitInFlight waits until want requests were in flight at once, failing
// with the most it saw.
func (g *gate) waitInFlight(t *testing.T) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d requests in flight at once", g.want), 20*time.Second,
		func() bool { return g.maxInFlight() >= g.want })
}

// A skip-on-failure mailbox is delivered mailbox_concurrency rows at a
// time, every row once; a drainer has at most workers x
// mailbox_concurrency requests in flight.
func testParallelDeliversOnce(t *testing.T, newStore storeFactory) {
	tests := []struct {
		name                 string
		boxes, rows          int
		workers, concurrency int
		wantInFlight         int
		provider             string
	}{
		{"one mailbox", 1, 200, 8, 4, 4, "github"},
		{"three mailboxes, two workers", 3, 60, 2, 3, 6, "gitlab"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, newStore(t))
			g := newGate(t, tc.wantInFlight)
			f.us.set(g.serve)
			for b := 0; b < tc.boxes; b++ {
				f.insert(tc.provider, "us", fmt.Sprint(b), tc.rows)
			}
			cfg := f.fastConfig()
			cfg.Workers = tc.workers
			cfg.MailboxConcurrency = tc.concurrency
			cfg.RequestTimeout = 30 * time.Second // the gate holds requests
			cfg.Lease = 30 * time.Second
			f.run(f.newDrainer(cfg))
			g.waitInFlight(t)
			g.open()
			waitFor(t, "every row delivered", 60*time.Second, func() bool { return f.pending() == 0 })
			if m := g.maxInFlight(); m != tc.wantInFlight {
				t.Fatalf("%d requests in flight at once, want at most %d", m, tc.wantInFlight)
			}
			g.mu.Lock()
			defer g.mu.Unlock()
			if len(g.bodies) != tc.boxes*tc.rows {
				t.Fatalf("%d distinct rows delivered, want %d", len(g.bodies), tc.boxes*tc.rows)
			}
			for b, n := range g.bodies {
				if n != 1 {
					t.Fatalf("%s delivered %d times", b, n)
				}
			}
		})
	}
}

// A strict mailbox is delivered one row at a time, in order, whatever
// mailbox_concurrency says: while the region holds a row, the drainer makes
// its scans and sends nothing else; each row is released in turn.
func testStrictStaysSerial(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	var mu sync.Mutex
	started := 0
	release, done := make(chan struct{}), make(chan struct{})
	// Before the fake region's own cleanup (registered earlier, run
	// later), which waits for its handlers.
	t.Cleanup(func() { close(done) })
	f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
		mu.Lock()
		started++
		mu.Unlock()
		select {
		case <-release:
		case <-done:
		case <-r.Context().Done():
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	const rows = 12
	f.insert("jira", "us", "1", rows)
	cfg := f.fastConfig()
	cfg.MailboxConcurrency = 8
	cfg.RequestTimeout = 30 * time.Second // the region holds each request
	cfg.Lease = 30 * time.Second
	d := f.newDrainer(cfg)
	f.run(d)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return started
	}
	for i := 1; i <= rows; i++ {
		waitFor(t, fmt.Sprintf("request %d", i), 30*time.Second, func() bool { return count() >= i })
		f.waitScans(d, 2) // a second request of the mailbox would go out meanwhile
		if n := count(); n != i {
			t.Fatalf("%d requests of a strict mailbox in flight at once (%d delivered before)", n-(i-1), i-1)
		}
		release <- struct{}{}
	}
	waitFor(t, "every row delivered", 30*time.Second, func() bool { return f.pending() == 0 })
	for i, b := range f.us.bodies() {
		if b != fmt.Sprintf("1#%d", i) {
			t.Fatalf("delivery %d is %s", i, b)
		}
	}
}

// In a skip-on-failure mailbox a failed row is rescheduled alone: the
// rows around it are delivered once, rows stored later are delivered while
// the failed head waits in its backoff, and when it comes due only it is
// sent again. Serial (1) and parallel (4) alike.
func testParallelFailureRetriedAlone(t *testing.T, newStore storeFactory) {
	for _, concurrency := range []int{1, 4} {
		t.Run(fmt.Sprint("concurrency ", concurrency), func(t *testing.T) {
			f := newFixture(t, newStore(t))
			var mu sync.Mutex
			fail := map[string]bool{"1#0": true, "1#7": true}
			f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
				mu.Lock()
				bad := fail[string(body)]
				mu.Unlock()
				if bad {
					w.WriteHeader(500)
					return
				}
				w.WriteHeader(200)
			})
			ids := f.insert("github", "us", "1", 40)
			cfg := f.fastConfig()
			cfg.MailboxConcurrency = concurrency
			d := f.newDrainer(cfg)
			f.run(d)
			name := mailboxName("github", "us", "1")
			waitFor(t, "all but the two failed rows delivered", 30*time.Second, func() bool { return f.pending() == 2 })
			for _, id := range []int64{ids[0], ids[7]} {
				p, ok := f.payload(name, id)
				if !ok || p.Attempts != 1 || p.LastStatus != 500 || p.ScheduleFor.Sub(f.now()) < 4*time.Minute {
					t.Fatalf("failed row %d = %+v, %v; want rescheduled 4.2 min out with 1 attempt", id, p, ok)
				}
			}

			// The head waits in its backoff; rows stored behind it go.
			var later []store.NewPayload
			for i := 40; i < 50; i++ {
				later = append(later, newPayload("github", "us", "1", i))
			}
			if _, err := f.st.InsertPayloads(context.Background(), later); err != nil {
				t.Fatal(err)
			}
			d.Wake(name)
			waitFor(t, "the rows stored behind the backed-off head delivered", 30*time.Second, func() bool { return f.pending() == 2 })
			if p, ok := f.payload(name, ids[0]); !ok || p.Attempts != 1 {
				t.Fatalf("head = %+v, %v: touched while in backoff", p, ok)
			}

			// Due again: only the two failed rows are sent again.
			mu.Lock()
			fail = map[string]bool{}
			mu.Unlock()
			f.offset.Add(int64(5 * time.Minute))
			waitFor(t, "the failed rows delivered on retry", 30*time.Second, func() bool { return f.pending() == 0 })
			for b, n := range bodyCounts(f.us.bodies()) {
				want := 1
				if b == "1#0" || b == "1#7" {
					want = 2
				}
				if n != want {
					t.Fatalf("%s sent %d times, want %d", b, n, want)
				}
			}
			if got := len(f.us.requests()); got != 40+10+2 {
				t.Fatalf("region saw %d requests, want 52", got)
			}
		})
	}
}

// hold is a fake region's handler that holds every request until the
// client gives up, counting how many started and how many the client
// abandoned.
type hold struct {
	mu                 sync.Mutex
	started, abandoned int
	bodies             []string
	release            chan struct{}
}

func newHold(t *testing.T) *hold {
	h := &hold{release: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-h.release:
		default:
			close(h.release)
		}
	})
	return h
}

func (h *hold) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	h.mu.Lock()
	h.started++
	h.bodies = append(h.bodies, string(body))
	h.mu.Unlock()
	select {
	case <-r.Context().Done():
		h.mu.Lock()
		h.abandoned++
		h.mu.Unlock()
		return
	case <-h.release:
	}
	w.WriteHeader(http.StatusOK)
}

func (h *hold) counts() (started, abandoned int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.started, h.abandoned
}

// A drainer that loses a skip-on-failure mailbox's lease while rows are in
// flight abandons them all unrecorded and sends nothing more; the new
// owner delivers them (at least once).
func testParallelLeaseLost(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	h := newHold(t)
	f.us.set(h.serve)
	f.insert("github", "us", "1", 20)
	cfg := f.fastConfig()
	cfg.MailboxConcurrency = 4
	cfg.RequestTimeout = 30 * time.Second
	d := f.newDrainer(cfg)
	f.run(d)
	waitFor(t, "4 requests in flight", 30*time.Second, func() bool { s, _ := h.counts(); return s >= 4 })

	// Another owner takes the lease: it has lapsed on the store's clock.
	name := mailboxName("github", "us", "1")
	f.offset.Add(int64(cfg.Lease + time.Second))
	ok, err := f.st.ClaimMailbox(context.Background(), name, "thief", f.now(), f.now().Add(time.Hour))
	if err != nil || !ok {
		t.Fatalf("taking the lease over: %v, %v", ok, err)
	}
	waitFor(t, "the in-flight requests abandoned", 30*time.Second, func() bool { _, a := h.counts(); return a == 4 })
	f.waitScans(d, 3) // a delivery of the lost mailbox would go out meanwhile
	if s, _ := h.counts(); s != 4 {
		t.Fatalf("%d requests sent, want the 4 in flight when the lease was lost", s)
	}
	if f.pending() != 20 {
		t.Fatalf("pending = %d, want 20", f.pending())
	}
	boxes, _ := f.st.Mailboxes(context.Background(), f.now())
	if len(boxes) != 1 || boxes[0].HeadAttempts != 0 {
		t.Fatalf("mailboxes = %+v: an abandoned row was recorded", boxes)
	}

	// The thief lets go: everything is delivered, the abandoned rows again.
	close(h.release)
	if err := f.st.ReleaseMailbox(context.Background(), name, "thief"); err != nil {
		t.Fatal(err)
	}
	d.Wake(name)
	waitFor(t, "every row delivered", 30*time.Second, func() bool { return f.pending() == 0 })
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(bodyCounts(h.bodies)); n != 20 {
		t.Fatalf("%d distinct rows delivered, want 20", n)
	}
}

// Stopping a drainer with a parallel mailbox's rows in flight returns
// within the stop grace and records none of them; a new drainer delivers
// them.
func testParallelStopIsBounded(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	h := newHold(t)
	f.us.set(h.serve)
	f.insert("github", "us", "1", 20)
	cfg := f.fastConfig()
	cfg.MailboxConcurrency = 4
	cfg.RequestTimeout = 30 * time.Second
	cfg.Lease = 30 * time.Second
	stop := f.run(f.newDrainer(cfg))
	waitFor(t, "4 requests in flight", 30*time.Second, func() bool { s, _ := h.counts(); return s >= 4 })
	t0 := time.Now()
	stop()
	// The bound is the behaviour: stop grace, plus a generous 2 s for a
	// loaded machine.
	if d := time.Since(t0); d > cfg.StopGrace+2*time.Second {
		t.Fatalf("Run took %v to return", d)
	}
	waitFor(t, "the region to see the 4 requests abandoned", 30*time.Second, func() bool { _, a := h.counts(); return a == 4 })
	if s, _ := h.counts(); s != 4 {
		t.Fatalf("%d requests started, want the 4 in flight at the stop", s)
	}
	boxes, _ := f.st.Mailboxes(context.Background(), f.now())
	if f.pending() != 20 || len(boxes) != 1 || boxes[0].HeadAttempts != 0 {
		t.Fatalf("pending %d, mailboxes %+v: an abandoned row was recorded", f.pending(), boxes)
	}
	close(h.release)
	f.run(f.newDrainer(f.fastConfig()))
	waitFor(t, "delivered after restart", 30*time.Second, func() bool { return f.pending() == 0 })
}

// Two drainers on one store deliver every row of parallel mailboxes
// exactly once.
func testTwoDrainersExclusiveParallel(t *testing.T, newStore storeFactory) {
	st := newStore(t)
	boxes, per := 20, 40
	if testing.Short() || st.Engine() == "sqlite" {
		boxes, per = 5, 40
	}
	exclusiveRunWith(t, st, exclusiveCase{provider: "github", boxes: boxes, per: per, concurrency: 4})
}

// bodyCounts counts the deliveries of each body.
func bodyCounts(bodies []string) map[string]int {
	out := map[string]int{}
	for _, b := range bodies {
		out[b]++
	}
	return out
}
