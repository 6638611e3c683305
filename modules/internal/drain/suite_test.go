package drain

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// storeFactory gives each test a fresh, empty, migrated store.
type storeFactory func(t *testing.T) testStore

// suite is run against every engine: the in-memory fake here, SQLite and
// PostgreSQL in engines_test.go.
var suite = []struct {
	name string
	fn   func(t *testing.T, newStore storeFactory)
}{
	{"DeliversInOrder", testDeliversInOrder},
	{"StrictStopsAtFailure", testStrictStopsAtFailure},
	{"SkipOnFailure", testSkipOnFailure},
	{"TerminalStatuses", testTerminalStatuses},
	{"RetryableFailures", testRetryableFailures},
	{"AttemptsExceeded", testAttemptsExceeded},
	{"MaxAge", testMaxAge},
	{"ClaimSizeTurns", testClaimSizeTurns},
	{"ReplayFidelity", testReplayFidelity},
	{"RegionsIndependent", testRegionsIndependent},
	{"RetryAfter", testRetryAfter},
	{"BreakerSpendsNothing", testBreakerSpendsNothing},
	{"PoisonTimeoutIsCharged", testPoisonTimeoutIsCharged},
	{"Callbacks", testCallbacks},
	{"CallbackRefused", testCallbackRefused},
	{"CallbackRetryHoldsNothing", testCallbackRetryHoldsNothing},
	{"CallbackIgnoresBreaker", testCallbackIgnoresBreaker},
	{"StopIsBounded", testStopIsBounded},
	{"KilledThenRestarted", testKilledThenRestarted},
	{"TwoDrainersExclusive", testTwoDrainersExclusive},
	{"WakeLatency", testWakeLatency},
	{"PurgeDeadLetters", testPurgeDeadLetters},
	{"Gauges", testGauges},
}

func runSuite(t *testing.T, newStore storeFactory) {
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore) })
	}
}

func TestDrainerMemory(t *testing.T) {
	runSuite(t, func(t *testing.T) testStore { return newMemStore(nil) })
}

// §7 case 55: due rows go in id order and are deleted.
func testDeliversInOrder(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	f.insert("jira", "us", "1", 3)
	f.run(f.newDrainer(f.fastConfig()))
	// The counter moves just after the row is deleted: wait for both
	// (reading it once the rows were gone failed 1 full-suite run).
	waitFor(t, "3 deliveries", 30*time.Second, func() bool {
		return f.pending() == 0 && f.deliveries("us", OutcomeDelivered) >= 3
	})
	if got, want := f.us.bodies(), []string{"1#0", "1#1", "1#2"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	if n := f.deliveries("us", OutcomeDelivered); n != 3 {
		t.Fatalf("delivered metric = %v", n)
	}
}

// §7 case 56: a strict mailbox stops at its failing head, which is charged
// one attempt and rescheduled 4.2 minutes out.
func testStrictStopsAtFailure(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
		if string(body) == "1#0" {
			w.WriteHeader(500)
			return
		}
		w.WriteHeader(200)
	})
	ids := f.insert("jira", "us", "1", 3)
	start := f.now()
	d := f.newDrainer(f.fastConfig())
	f.run(d)
	name := mailboxName("jira", "us", "1")
	waitFor(t, "head rescheduled", 30*time.Second, func() bool {
		p, ok := f.payload(name, ids[0])
		return ok && p.Attempts == 1
	})
	f.waitScans(d, 5) // several polls: nothing else may go out
	if got := f.us.bodies(); len(got) != 1 || got[0] != "1#0" {
		t.Fatalf("region saw %v, want only the head", got)
	}
	p, _ := f.payload(name, ids[0])
	if d := p.ScheduleFor.Sub(start); d < 4*time.Minute+11*time.Second || d > 4*time.Minute+13*time.Second+time.Second {
		t.Fatalf("head rescheduled %v after the failure, want 4.2 min", d)
	}
	if p.LastStatus != 500 {
		t.Fatalf("last status %d", p.LastStatus)
	}
	if f.pending() != 3 {
		t.Fatalf("pending = %d, want 3", f.pending())
	}
}

// §7 case 57: a skip-on-failure mailbox moves past its failing row.
func testSkipOnFailure(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
		if string(body) == "1#0" {
			w.WriteHeader(500)
			return
		}
		w.WriteHeader(200)
	})
	ids := f.insert("github", "us", "1", 3)
	f.run(f.newDrainer(f.fastConfig()))
	// The rows go out mailbox_concurrency at a time: rows 2-3 may be
	// deleted before row 1's failure is written back, so wait for both.
	waitFor(t, "rows 2-3 delivered, row 1 rescheduled", 30*time.Second, func() bool {
		p, ok := f.payload(mailboxName("github", "us", "1"), ids[0])
		return f.pending() == 1 && ok && p.Attempts > 0
	})
	p, ok := f.payload(mailboxName("github", "us", "1"), ids[0])
	if !ok || p.Attempts != 1 {
		t.Fatalf("row 1 = %+v, %v; want rescheduled with 1 attempt", p, ok)
	}
	// Its rows go mailbox_concurrency at a time, so in any order.
	if got := slices.Sorted(slices.Values(f.us.bodies())); fmt.Sprint(got) != "[1#0 1#1 1#2]" {
		t.Fatalf("region saw %v", got)
	}
}

// §7 case 58, adapted: terminal statuses go to the dead letters, never
// retried, and the mailbox goes on.
func testTerminalStatuses(t *testing.T, newStore storeFactory) {
	for _, code := range []int{400, 401, 403, 404, 409} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			f := newFixture(t, newStore(t))
			f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
				if string(body) == "1#0" {
					w.WriteHeader(code)
					return
				}
				w.WriteHeader(200)
			})
			ids := f.insert("jira", "us", "1", 2)
			d := f.newDrainer(f.fastConfig())
			f.run(d)
			waitFor(t, "mailbox empty", 30*time.Second, func() bool { return f.pending() == 0 })
			f.waitScans(d, 3) // a retry would go out meanwhile
			dls := f.deadLetters()
			if len(dls) != 1 || dls[0].ID != ids[0] || dls[0].Reason != fmt.Sprintf("dropped_%d", code) || dls[0].LastStatus != code {
				t.Fatalf("dead letters = %+v", dls)
			}
			if n := len(f.us.requests()); n != 2 {
				t.Fatalf("region saw %d requests, want 2 (no retry)", n)
			}
		})
	}
}

// §7 case 59, adapted: other statuses spend an attempt and back off;
// timeouts and 502s from a region that answers nothing else spend none
// (the breaker's business), but are recorded.
func testRetryableFailures(t *testing.T, newStore storeFactory) {
	tests := []struct {
		name         string
		respond      func(w http.ResponseWriter, r *http.Request)
		wantAttempts int
		wantStatus   int
		wantErr      string
	}{
		{"429", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(429) }, 1, 429, "region answered 429"},
		{"422", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(422) }, 1, 422, "region answered 422"},
		{"405", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(405) }, 1, 405, "region answered 405"},
		{"500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, 1, 500, "region answered 500"},
		{"502 spends nothing", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) }, 0, 502, "region answered 502"},
		{"timeout spends nothing", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		}, 0, 0, "timeout"},
		{"reset spends nothing", func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, 0, 0, "EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, newStore(t))
			f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) { tc.respond(w, r) })
			ids := f.insert("jira", "us", "1", 1)
			cfg := f.fastConfig()
			cfg.RequestTimeout = 100 * time.Millisecond
			cfg.BreakerFailures = 1000
			f.run(f.newDrainer(cfg))
			name := mailboxName("jira", "us", "1")
			waitFor(t, "failure recorded", 30*time.Second, func() bool {
				p, ok := f.payload(name, ids[0])
				return ok && (p.LastStatus != 0 || p.LastError != "")
			})
			p, _ := f.payload(name, ids[0])
			if p.Attempts != tc.wantAttempts || p.LastStatus != tc.wantStatus || !strings.Contains(p.LastError, tc.wantErr) {
				t.Fatalf("row = attempts %d, status %d, error %q; want %d, %d, %q",
					p.Attempts, p.LastStatus, p.LastError, tc.wantAttempts, tc.wantStatus, tc.wantErr)
			}
			if tc.wantAttempts == 1 && p.ScheduleFor.Sub(f.now()) < 4*time.Minute {
				t.Fatalf("not backed off: due %v", p.ScheduleFor)
			}
			if len(f.deadLetters()) != 0 {
				t.Fatal("dead-lettered")
			}
		})
	}
}

// §7 case 60, adapted: a row that used its attempts goes to the dead
// letters without a request; the tenth failure does the same.
func testAttemptsExceeded(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	st := f.st
	ids := f.insert("jira", "us", "1", 2)
	ctx := context.Background()
	past := time.Now().Add(-time.Minute)
	if err := st.ReschedulePayload(ctx, ids[0], 10, past, 500, "region answered 500"); err != nil {
		t.Fatal(err)
	}
	if err := st.ReschedulePayload(ctx, ids[1], 9, past, 500, "region answered 500"); err != nil {
		t.Fatal(err)
	}
	f.us.status(500) // the row with an attempt left fails its tenth
	f.run(f.newDrainer(f.fastConfig()))
	waitFor(t, "both dead-lettered", 30*time.Second, func() bool { return len(f.deadLetters()) == 2 })
	dls := f.deadLetters()
	for i, dl := range dls {
		if dl.Reason != store.ReasonAttemptsExceeded || dl.LastStatus != 500 {
			t.Fatalf("dead letter %d = %+v", i, dl)
		}
	}
	if got := f.us.bodies(); fmt.Sprint(got) != "[1#1]" {
		t.Fatalf("region saw %v, want only the row with an attempt left", got)
	}
}

// §7 case 61, adapted: a payload past max_age goes to the dead letters
// without a request.
func testMaxAge(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	f.insert("jira", "us", "1", 1)
	f.offset.Store(int64(73 * time.Hour))
	f.run(f.newDrainer(f.fastConfig()))
	waitFor(t, "dead-lettered", 30*time.Second, func() bool { return len(f.deadLetters()) == 1 })
	if dl := f.deadLetters()[0]; dl.Reason != store.ReasonMaxAge {
		t.Fatalf("reason %q", dl.Reason)
	}
	if n := len(f.us.requests()); n != 0 {
		t.Fatalf("region saw %d requests", n)
	}
}

// §7 case 62, adapted: a mailbox deeper than claim_size is drained in
// several turns, still in order.
func testClaimSizeTurns(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	f.insert("jira", "us", "1", 250)
	cfg := f.fastConfig()
	cfg.ClaimSize = 60
	f.run(f.newDrainer(cfg))
	waitFor(t, "250 deliveries", 60*time.Second, func() bool { return f.pending() == 0 })
	got := f.us.bodies()
	if len(got) != 250 {
		t.Fatalf("delivered %d", len(got))
	}
	for i, b := range got {
		if b != fmt.Sprintf("1#%d", i) {
			t.Fatalf("delivery %d is %s", i, b)
		}
	}
}

// §7 case 63: the replayed request is the captured one.
func testReplayFidelity(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	body := []byte("{\"zen\":\"ok\",\"bin\":\"\xff\xfe\x00\"}")
	p := store.NewPayload{
		MailboxName: mailboxName("github", "us", "77"),
		Provider:    "github",
		Region:      "us",
		Method:      http.MethodPost,
		Path:        "/extensions/github/webhook/?a=1&a=2&q=%2Fx",
		Headers: http.Header{
			"Content-Type":        {"application/json"},
			"X-Hub-Signature-256": {"sha256=0123"},
			"X-Github-Delivery":   {"d-1"},
			"Host":                {"sentry.io"},
			"Content-Length":      {"999"},
			"X-Forwarded-Proto":   {"https"},
			"Connection":          {"close"},
			"Content-Encoding":    {"identity"},
		},
		Body: body,
	}
	if _, err := f.st.InsertPayloads(context.Background(), []store.NewPayload{p}); err != nil {
		t.Fatal(err)
	}
	f.run(f.newDrainer(f.fastConfig()))
	waitFor(t, "delivery", 30*time.Second, func() bool { return f.pending() == 0 })
	r := f.us.requests()[0]
	if r.Method != "POST" || r.URI != p.Path || !bytes.Equal(r.Body, body) {
		t.Fatalf("got %s %s %q", r.Method, r.URI, r.Body)
	}
	if r.Host != f.us.url().Host {
		t.Fatalf("Host = %q, want the region's", r.Host)
	}
	if r.Header.Get("X-Hub-Signature-256") != "sha256=0123" || r.Header.Get("X-Github-Delivery") != "d-1" ||
		r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Content-Encoding") != "identity" {
		t.Fatalf("headers lost: %v", r.Header)
	}
	if r.Header.Get("X-Forwarded-Proto") != "" || r.Header.Get("Content-Length") != fmt.Sprint(len(body)) {
		t.Fatalf("headers not cleaned: %v", r.Header)
	}
}

// §7 case 65: a failing de copy does not block the us copy.
func testRegionsIndependent(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	f.de.status(500)
	f.insert("jira", "de", "1", 2)
	f.insert("jira", "us", "1", 2)
	d := f.newDrainer(f.fastConfig())
	f.run(d)
	waitFor(t, "us delivered", 30*time.Second, func() bool { return len(f.us.requests()) == 2 })
	waitFor(t, "de attempted", 30*time.Second, func() bool { return len(f.de.requests()) == 1 })
	waitFor(t, "only the 2 de rows pending", 30*time.Second, func() bool { return f.pending() == 2 })
	f.waitScans(d, 3) // the second de row would go out meanwhile
	if n := len(f.de.requests()); n != 1 {
		t.Fatalf("de saw %d requests: the strict mailbox went past its failed head", n)
	}
}

// Retry-After on 429 (an attempt) and 503 (no attempt) lengthens the wait,
// clamped to the cap.
func testRetryAfter(t *testing.T, newStore storeFactory) {
	tests := []struct {
		name         string
		status       int
		retryAfter   string
		wantAttempts int
		wantDelay    time.Duration
	}{
		{"429 longer than backoff", 429, "600", 1, 10 * time.Minute},
		{"429 shorter than backoff", 429, "5", 1, 252 * time.Second},
		{"429 past the cap", 429, "86400", 1, time.Hour},
		{"503 waits without an attempt", 503, "120", 0, 2 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, newStore(t))
			f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
				w.Header().Set("Retry-After", tc.retryAfter)
				w.WriteHeader(tc.status)
			})
			ids := f.insert("jira", "us", "1", 1)
			start := f.now()
			cfg := f.fastConfig()
			cfg.BreakerFailures = 1000
			f.run(f.newDrainer(cfg))
			name := mailboxName("jira", "us", "1")
			waitFor(t, "failure recorded", 30*time.Second, func() bool {
				p, ok := f.payload(name, ids[0])
				return ok && p.LastStatus == tc.status
			})
			p, _ := f.payload(name, ids[0])
			d := p.ScheduleFor.Sub(start)
			if p.Attempts != tc.wantAttempts || d < tc.wantDelay-time.Second || d > tc.wantDelay+2*time.Second {
				t.Fatalf("attempts %d, due in %v; want %d, %v", p.Attempts, d, tc.wantAttempts, tc.wantDelay)
			}
		})
	}
}

// A region that is down opens the breaker: its mailboxes wait, spend no
// attempts and send nothing to the dead letters; probes find it back and
// everything is delivered.
func testBreakerSpendsNothing(t *testing.T, newStore storeFactory) {
	for _, mode := range []string{"503", "connection reset"} {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, newStore(t))
			down := func(w http.ResponseWriter, r *http.Request, body []byte) {
				if mode == "503" {
					w.WriteHeader(503)
					return
				}
				if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
					conn.Close()
				}
			}
			f.de.set(down)
			for i := 0; i < 4; i++ {
				f.insert("jira", "de", fmt.Sprint(i), 5)
				f.insert("github", "de", fmt.Sprint("g", i), 5)
			}
			f.insert("jira", "us", "x", 3)
			cfg := f.fastConfig()
			cfg.BreakerFailures = 3
			cfg.MaxAttempts = 2 // would dead-letter quickly if attempts were spent
			d := f.newDrainer(cfg)
			f.run(d)
			waitFor(t, "breaker open", 30*time.Second, func() bool { return d.BreakerOpen("de") })
			waitFor(t, "probes", 30*time.Second, func() bool { return f.de.probeCount() >= 3 })
			waitFor(t, "us delivered meanwhile", 30*time.Second, func() bool { return len(f.us.requests()) == 3 })
			sent := len(f.de.requests())
			f.waitScans(d, 7) // poll rounds while the breaker is open
			if n := len(f.de.requests()); n != sent {
				t.Fatalf("%d payload requests while the breaker was open", n-sent)
			}
			// The threshold, and what was in flight when the breaker
			// opened: at most workers x mailbox_concurrency.
			if sent > 3+cfg.Workers*DefaultMailboxConcurrency {
				t.Fatalf("%d payload requests to a dead region, want about the threshold", sent)
			}
			boxes, _ := f.st.Mailboxes(context.Background(), f.now())
			for _, b := range boxes {
				if b.HeadAttempts != 0 {
					t.Fatalf("mailbox %s head spent %d attempts", b.Name, b.HeadAttempts)
				}
			}
			if n := len(f.deadLetters()); n != 0 {
				t.Fatalf("%d dead letters", n)
			}
			f.de.set(nil)
			waitFor(t, "breaker closed and backlog delivered", 60*time.Second, func() bool { return f.pending() == 0 })
			if d.BreakerOpen("de") {
				t.Fatal("breaker still open")
			}
			if n := len(f.deadLetters()); n != 0 {
				t.Fatalf("%d dead letters", n)
			}
			// Strict mailboxes kept their order across the outage: a row
			// may be sent again, never one before it.
			last := map[string]int{}
			for _, b := range f.de.bodies() {
				subject, n, _ := strings.Cut(b, "#")
				if strings.HasPrefix(subject, "g") {
					continue
				}
				var k int
				fmt.Sscan(n, &k)
				if prev, ok := last[subject]; ok && k < prev {
					t.Fatalf("strict mailbox %s went back from %d to %d", subject, prev, k)
				}
				last[subject] = k
			}
		})
	}
}

// A payload that always times out on a region that answers everything else
// is the payload's failure: it spends attempts and reaches the dead
// letters, and the breaker stays closed.
func testPoisonTimeoutIsCharged(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
		if string(body) == "poison#0" {
			select {
			case <-r.Context().Done():
			case <-time.After(time.Second):
			}
			return
		}
		w.WriteHeader(200)
	})
	f.insert("jira", "us", "poison", 1)
	cfg := f.fastConfig()
	cfg.RequestTimeout = 150 * time.Millisecond
	cfg.BackoffBase = time.Millisecond
	cfg.BackoffCap = 5 * time.Millisecond
	cfg.MaxAttempts = 3
	cfg.BreakerFailures = 1000
	d := f.newDrainer(cfg)
	f.run(d)
	// Healthy traffic to the same region while the poison times out.
	stopTraffic := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stopTraffic:
				return
			case <-time.After(10 * time.Millisecond):
			}
			f.insert("jira", "us", fmt.Sprint("ok", i), 1)
			d.Wake(mailboxName("jira", "us", fmt.Sprint("ok", i)))
		}
	}()
	defer func() { close(stopTraffic); wg.Wait() }()
	waitFor(t, "poison dead-lettered", 60*time.Second, func() bool { return len(f.deadLetters()) == 1 })
	if dl := f.deadLetters()[0]; dl.Reason != store.ReasonAttemptsExceeded || dl.LastError != "timeout" {
		t.Fatalf("dead letter %+v", dl)
	}
}

// Run returns within a bound when its ctx ends, even with a region that
// hangs; the abandoned row is left as it was (not half-recorded).
func testStopIsBounded(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	started := make(chan struct{}, 1)
	f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
		select {
		case started <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	ids := f.insert("jira", "us", "1", 1)
	cfg := f.fastConfig()
	cfg.RequestTimeout = 20 * time.Second
	cfg.Lease = 30 * time.Second
	stop := f.run(f.newDrainer(cfg))
	<-started
	t0 := time.Now()
	stop()
	if d := time.Since(t0); d > cfg.StopGrace+2*time.Second {
		t.Fatalf("Run took %v to return", d)
	}
	p, ok := f.payload(mailboxName("jira", "us", "1"), ids[0])
	if !ok || p.Attempts != 0 || p.LastError != "" {
		t.Fatalf("row after stop = %+v, %v", p, ok)
	}
	// The lease was released: a new drainer takes over at once.
	f.us.set(nil)
	f.run(f.newDrainer(f.fastConfig()))
	waitFor(t, "delivered after restart", 30*time.Second, func() bool { return f.pending() == 0 })
}

// A drainer killed mid-drain (its leases left to lapse) and a fresh one
// deliver everything at least once, in order within each mailbox.
func testKilledThenRestarted(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
		time.Sleep(2 * time.Millisecond)
		w.WriteHeader(200)
	})
	const boxes, per = 10, 30
	for i := 0; i < boxes; i++ {
		f.insert("jira", "us", fmt.Sprint(i), per)
	}
	cfg := f.fastConfig()
	cfg.Lease = 300 * time.Millisecond
	cfg.StopGrace = time.Millisecond
	stop := f.run(f.newDrainer(cfg))
	waitFor(t, "some deliveries", 30*time.Second, func() bool { return len(f.us.requests()) >= 50 })
	stop()
	if f.pending() == 0 {
		t.Fatal("drained before the kill; make the region slower")
	}
	f.run(f.newDrainer(cfg))
	waitFor(t, "all delivered", 60*time.Second, func() bool { return f.pending() == 0 })
	firsts := map[string]bool{}
	last := map[string]int{}
	for _, b := range f.us.bodies() {
		firsts[b] = true
		subject, n, _ := strings.Cut(b, "#")
		var k int
		fmt.Sscan(n, &k)
		if prev, ok := last[subject]; ok && k < prev && !firsts[b] {
			t.Fatalf("mailbox %s out of order: %d after %d", subject, k, prev)
		}
		last[subject] = k
	}
	if len(firsts) != boxes*per {
		t.Fatalf("%d distinct payloads delivered, want %d", len(firsts), boxes*per)
	}
}

// Two drainers on one store: each payload is delivered exactly once and in
// order within its mailbox.
func testTwoDrainersExclusive(t *testing.T, newStore storeFactory) {
	st := newStore(t)
	boxes, per := 100, 20
	if testing.Short() || st.Engine() == "sqlite" {
		boxes = 20 // one writer: keep it quick under -race too
	}
	exclusiveRun(t, st, boxes, per)
}

func exclusiveRun(t *testing.T, st testStore, boxes, per int) {
	exclusiveRunWith(t, st, exclusiveCase{provider: "jira", boxes: boxes, per: per})
}

// exclusiveCase is a two-drainer run: boxes mailboxes of provider, per
// rows each, delivered with concurrency (0: the default). Strict
// mailboxes must also arrive in order.
type exclusiveCase struct {
	provider    string
	boxes, per  int
	concurrency int
}

func exclusiveRunWith(t *testing.T, st testStore, c exclusiveCase) {
	boxes, per := c.boxes, c.per
	ordered := !slices.Contains(DefaultSkipOnFailure(), c.provider)
	// A parallel run holds its requests until every round is stored, then
	// until two rows of one mailbox are in flight at once, so that rows do
	// overlap within a mailbox (an instant region would rarely show it)
	// and both drainers have full mailboxes to contend for.
	parallel := !ordered && c.concurrency > 1
	inserted, overlapped, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var overlapOnce sync.Once
	// Before the fake region's own cleanup (registered earlier, run
	// later), which waits for its handlers.
	t.Cleanup(func() { close(done) })
	f := newFixture(t, st)
	var mu sync.Mutex
	seen := map[string]int{}
	next := map[string]int{}
	inFlight, most := map[string]int{}, map[string]int{}
	var dup, order []string
	f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
		b := string(body)
		subject, n, _ := strings.Cut(b, "#")
		var k int
		fmt.Sscan(n, &k)
		mu.Lock()
		seen[b]++
		if seen[b] > 1 {
			dup = append(dup, b)
		}
		if ordered && k != next[subject] {
			order = append(order, fmt.Sprintf("%s got %d, want %d", subject, k, next[subject]))
		}
		next[subject] = k + 1
		inFlight[subject]++
		most[subject] = max(most[subject], inFlight[subject])
		if inFlight[subject] > 1 {
			overlapOnce.Do(func() { close(overlapped) })
		}
		mu.Unlock()
		if parallel {
			// A row that came while rows were still being stored waits
			// for the last of them: its turn found the mailbox drained
			// and takes no more rows, so it must not wait for an overlap.
			// A row that came after waits for the overlap, which the
			// next turns (holding many rows each) bring.
			gate := overlapped
			select {
			case <-inserted:
			default:
				gate = inserted
			}
			select {
			case <-gate:
			case <-done:
			case <-r.Context().Done():
			}
		}
		mu.Lock()
		inFlight[subject]--
		mu.Unlock()
		w.WriteHeader(200)
	})
	// Insert in rounds so both drainers are busy while captures arrive.
	cfg := f.fastConfig()
	cfg.Workers = 16
	cfg.MailboxConcurrency = c.concurrency
	// Exactly once holds while the store answers within the lease; on a
	// loaded machine (or under -race) a short lease can lapse behind a
	// busy SQLite writer, which is at-least-once territory
	// (testKilledThenRestarted).
	cfg.Lease = 30 * time.Second
	if parallel {
		// Held requests must not time out and be sent again: that
		// would be a second delivery of a row for a reason of our own.
		cfg.RequestTimeout = 30 * time.Second
	}
	if st.Engine() == "sqlite" {
		// One writer: 32 workers only queue behind it (and SQLite is
		// the one-instance engine anyway).
		cfg.Workers = 4
	}
	a, b := f.newDrainer(cfg), f.newDrainer(cfg)
	f.run(a)
	f.run(b)
	for round := 0; round < per; round++ {
		var ps []store.NewPayload
		for i := 0; i < boxes; i++ {
			ps = append(ps, newPayload(c.provider, "us", fmt.Sprint(i), round))
		}
		if _, err := f.st.InsertPayloads(context.Background(), ps); err != nil {
			t.Fatal(err)
		}
		names := make([]string, 0, boxes)
		for _, p := range ps {
			names = append(names, p.MailboxName)
		}
		a.Wake(names...)
		b.Wake(names...)
	}
	close(inserted)
	if parallel {
		waitFor(t, "two rows of one mailbox in flight at once", 30*time.Second, func() bool {
			select {
			case <-overlapped:
				return true
			default:
				return false
			}
		})
	}
	waitFor(t, "all delivered", 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == boxes*per
	})
	waitFor(t, "store empty", 60*time.Second, func() bool { return f.pending() == 0 })
	f.waitScans(a, 3) // a late second delivery would go out meanwhile
	f.waitScans(b, 3)
	mu.Lock()
	defer mu.Unlock()
	if len(dup) > 0 {
		t.Fatalf("%d duplicate deliveries, e.g. %v", len(dup), dup[0])
	}
	if len(order) > 0 {
		t.Fatalf("%d out-of-order deliveries, e.g. %v", len(order), order[0])
	}
	for subject, m := range most {
		if ordered && m > 1 {
			t.Fatalf("strict mailbox %s had %d rows in flight at once", subject, m)
		}
		if m > max(c.concurrency, 1) {
			t.Fatalf("mailbox %s had %d rows in flight at once, mailbox_concurrency is %d", subject, m, c.concurrency)
		}
	}
}

// A Wake delivers at once, long before the poll.
func testWakeLatency(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	cfg := f.fastConfig()
	cfg.PollInterval = time.Hour
	d := f.newDrainer(cfg)
	f.run(d)
	waitFor(t, "the initial scan", 30*time.Second, func() bool { return f.scans[d].n.Load() >= 1 })
	var worst time.Duration
	for i := 0; i < 20; i++ {
		t0 := time.Now()
		f.insert("jira", "us", fmt.Sprint(i), 1)
		d.Wake(mailboxName("jira", "us", fmt.Sprint(i)))
		waitFor(t, "delivery", 30*time.Second, func() bool { return len(f.us.requests()) == i+1 })
		worst = max(worst, time.Since(t0))
	}
	if worst > 500*time.Millisecond {
		t.Fatalf("worst capture-to-delivery %v", worst)
	}
	t.Logf("worst capture-to-delivery over 20 wakes: %v", worst)
}

// Dead letters older than the retention are purged; newer ones stay.
func testPurgeDeadLetters(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	ids := f.insert("jira", "us", "1", 2)
	ctx := context.Background()
	if err := f.st.DeadLetterPayload(ctx, ids[0], "dropped_404", 404, "", time.Now().Add(-200*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := f.st.DeadLetterPayload(ctx, ids[1], "dropped_404", 404, "", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	cfg := f.fastConfig()
	cfg.PurgeInterval = 20 * time.Millisecond
	f.run(f.newDrainer(cfg))
	waitFor(t, "purge", 30*time.Second, func() bool { return len(f.deadLetters()) == 1 })
	if dl := f.deadLetters()[0]; dl.ID != ids[1] {
		t.Fatalf("kept %d", dl.ID)
	}
}

// Depth and age gauges follow the store.
func testGauges(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	f.de.status(500)
	f.insert("jira", "de", "1", 3)
	f.run(f.newDrainer(f.fastConfig()))
	waitFor(t, "depth gauge", 30*time.Second, func() bool {
		mfs, _ := f.reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "caddy_sentry_mailbox_depth" {
				for _, m := range mf.GetMetric() {
					if m.GetLabel()[0].GetValue() == "de" && m.GetGauge().GetValue() == 3 {
						return true
					}
				}
			}
		}
		return false
	})
}
