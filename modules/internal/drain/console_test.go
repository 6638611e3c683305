package drain

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// consoleStore is what the console tests need of an engine beyond
// testStore: the pauses and the history.
type consoleStore interface {
	testStore
	pauseSource
	historian
	Pause(ctx context.Context, p store.Pause) (store.Pause, bool, error)
	Resume(ctx context.Context, kind, name string) (bool, error)
	ListDelivered(ctx context.Context, f store.RowFilter, after store.DeliveredCursor, limit int) ([]store.DeliveredSummary, error)
}

// newConsoleDrainer is newDrainer keeping the store's pauses and history,
// which the scan counter's wrapper would hide.
func (f *fixture) newConsoleDrainer(cfg Config) *Drainer {
	cs := f.st.(consoleStore)
	c := &scanCounter{Store: f.st}
	var st Store = struct {
		*scanCounter
		pauseSource
		historian
	}{c, cs, cs}
	if l, ok := f.st.(listener); ok {
		st = struct {
			*scanCounter
			listener
			pauseSource
			historian
		}{c, l, cs, cs}
	}
	var logger *zap.Logger
	if tt, ok := f.t.(*testing.T); ok {
		logger = zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel))
	}
	d := New(cfg.withNow(f.now), st, func(name string) (*url.URL, bool) {
		u, ok := f.regions[name]
		return u, ok
	}, logger, f.metrics)
	f.scans[d] = c
	return d
}

func (c Config) withNow(now func() time.Time) Config {
	if c.Now == nil {
		c.Now = now
	}
	return c
}

func TestConsoleSQLite(t *testing.T) { runConsole(t, openSQLite) }

func TestConsolePostgres(t *testing.T) { runConsole(t, openPostgres) }

func runConsole(t *testing.T, open storeFactory) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"PauseSpendsNothing", testPauseSpendsNothing},
		{"PauseLandsMidTurn", testPauseLandsMidTurn},
		{"DeliveredHistory", testDeliveredHistoryKept},
		{"Status", testStatus},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newFixture(t, open(t))) })
	}
}

func pause(t *testing.T, f *fixture, kind, name string) time.Time {
	t.Helper()
	at := time.Now()
	if _, _, err := f.st.(consoleStore).Pause(context.Background(), store.Pause{Kind: kind, Name: name, PausedAt: at}); err != nil {
		t.Fatal(err)
	}
	return at
}

func resume(t *testing.T, f *fixture, d *Drainer, kind, name string) {
	t.Helper()
	if ok, err := f.st.(consoleStore).Resume(context.Background(), kind, name); err != nil || !ok {
		t.Fatalf("Resume = %v, %v", ok, err)
	}
	d.Wake() // what the admin API does after a resume
}

// A paused region and a paused mailbox get nothing and spend nothing while
// captures keep arriving; others are delivered meanwhile; a resume
// delivers what waited, in order.
func testPauseSpendsNothing(t *testing.T, f *fixture) {
	pause(t, f, store.PauseRegion, "us")
	pause(t, f, store.PauseMailbox, "jira:de:held")
	f.insert("jira", "us", "a", 4)
	f.insert("github", "us", "b", 3) // skip-on-failure: held all the same
	f.insert("jira", "de", "held", 3)
	f.insert("jira", "de", "free", 5)
	d := f.newConsoleDrainer(f.fastConfig())
	f.run(d)
	waitFor(t, "the free mailbox delivered", 30*time.Second, func() bool { return len(f.de.requests()) == 5 })
	f.insert("jira", "us", "a", 2) // captures go on while paused
	d.Wake(mailboxName("jira", "us", "a"))
	f.waitScans(d, 5)
	if n := len(f.us.requests()); n != 0 {
		t.Fatalf("%d requests to a paused region", n)
	}
	if n := len(f.de.requests()); n != 5 {
		t.Fatalf("%d requests to de, want the 5 of the free mailbox only", n)
	}
	boxes, _ := f.st.Mailboxes(context.Background(), f.now())
	for _, b := range boxes {
		if b.HeadAttempts != 0 {
			t.Fatalf("paused mailbox %s spent %d attempts", b.Name, b.HeadAttempts)
		}
	}
	if got := f.pending(); got != 12 {
		t.Fatalf("%d pending, want 12", got)
	}
	resume(t, f, d, store.PauseRegion, "us")
	waitFor(t, "the region's backlog delivered", 30*time.Second, func() bool { return len(f.us.requests()) == 9 })
	var a []string
	for _, b := range f.us.bodies() {
		if strings.HasPrefix(b, "a#") {
			a = append(a, b)
		}
	}
	if !slices.Equal(a, []string{"a#0", "a#1", "a#2", "a#3", "a#0", "a#1"}) {
		t.Fatalf("order after the resume: %v", a)
	}
	f.waitScans(d, 3)
	if n := len(f.de.requests()); n != 5 {
		t.Fatalf("the paused mailbox was delivered with its region's resume: %d requests", n)
	}
	resume(t, f, d, store.PauseMailbox, "jira:de:held")
	waitFor(t, "the mailbox delivered", 30*time.Second, func() bool { return f.pending() == 0 })
	if n := len(f.deadLetters()); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}

// A pause landing while a delivery is in flight lets that delivery finish
// and sends nothing after it.
func testPauseLandsMidTurn(t *testing.T, f *fixture) {
	inFlight, release := make(chan struct{}), make(chan struct{})
	var first sync.Once
	f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
		first.Do(func() {
			close(inFlight)
			<-release
		})
		w.WriteHeader(http.StatusOK)
	})
	f.insert("jira", "us", "m", 5)
	cfg := f.fastConfig()
	// The held request, and the turn's lease, must outlast the wait for
	// the pause to be read. With fastConfig's 2s request timeout and 2s
	// lease, on a machine at load ~20 (the whole suite), the delivery
	// could not be recorded (a timed-out request is a retry; a lost lease
	// stops the turn unrecorded), and the paused mailbox kept its 5 rows.
	cfg.RequestTimeout = time.Minute
	cfg.Lease = 30 * time.Second
	d := f.newConsoleDrainer(cfg)
	f.run(d)
	<-inFlight
	at := pause(t, f, store.PauseMailbox, "jira:us:m")
	d.Wake()
	waitFor(t, "the pause read", 30*time.Second, func() bool { loaded, _ := d.pauses.state(); return loaded.After(at) })
	close(release)
	waitFor(t, "the delivery in flight recorded", 30*time.Second, func() bool { return f.pending() == 4 })
	f.waitScans(d, 5)
	if n := len(f.us.requests()); n != 1 {
		t.Fatalf("%d requests after the pause landed, want only the one in flight", n)
	}
	resume(t, f, d, store.PauseMailbox, "jira:us:m")
	waitFor(t, "delivered after the resume", 30*time.Second, func() bool { return f.pending() == 0 })
	if got := f.us.bodies(); !slices.Equal(got, []string{"m#0", "m#1", "m#2", "m#3", "m#4"}) {
		t.Fatalf("bodies = %v", got)
	}
}

// With DeliveredRetention, delivered rows move to the history with their
// status, duration and attempts, and are purged after the retention.
func testDeliveredHistoryKept(t *testing.T, f *fixture) {
	ids := f.insert("jira", "us", "h", 3)
	f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) { w.WriteHeader(http.StatusAccepted) })
	cfg := f.fastConfig()
	cfg.DeliveredRetention = time.Hour
	cfg.PurgeInterval = 20 * time.Millisecond
	d := f.newConsoleDrainer(cfg)
	f.run(d)
	waitFor(t, "delivered", 30*time.Second, func() bool { return f.pending() == 0 })
	cs := f.st.(consoleStore)
	rows, err := cs.ListDelivered(context.Background(), store.RowFilter{}, store.DeliveredCursor{}, 10)
	if err != nil || len(rows) != 3 {
		t.Fatalf("history = %+v, %v", rows, err)
	}
	for i, r := range rows {
		if r.ID != ids[i] || r.Status != http.StatusAccepted || r.Duration <= 0 || r.Attempts != 1 || r.At.IsZero() {
			t.Errorf("history row %d = %+v", i, r)
		}
	}
	if got := d.Status(nil).DeliveredRetention; got != time.Hour {
		t.Errorf("Status().DeliveredRetention = %v", got)
	}
	f.offset.Store(int64(2 * time.Hour))
	waitFor(t, "purged after the retention", 30*time.Second, func() bool {
		rows, _ := cs.ListDelivered(context.Background(), store.RowFilter{}, store.DeliveredCursor{}, 10)
		return len(rows) == 0
	})
}

// Status: workers, the delivery rate, and per region the breaker and the
// last error, never with a URL.
func testStatus(t *testing.T, f *fixture) {
	f.de.status(503)
	f.insert("jira", "us", "s", 4)
	f.insert("jira", "de", "s", 1)
	cfg := f.fastConfig()
	cfg.BreakerFailures = 2
	d := f.newConsoleDrainer(cfg)
	f.run(d)
	waitFor(t, "us delivered", 30*time.Second, func() bool { return len(f.us.requests()) == 4 })
	waitFor(t, "de's breaker open", 30*time.Second, func() bool { return d.BreakerOpen("de") })
	waitFor(t, "the pauses read", 30*time.Second, func() bool { loaded, _ := d.pauses.state(); return !loaded.IsZero() })
	s := d.Status([]string{"de", "us", "nowhere"})
	if !s.Running || s.Workers != cfg.Workers || s.Owner == "" || s.DeliveredPerSecond <= 0 || s.RateWindow <= 0 {
		t.Fatalf("status = %+v", s)
	}
	de, us := s.Regions[0], s.Regions[1]
	if !de.BreakerOpen || de.ConsecutiveFailures < 2 || de.LastError != "region answered 503" || de.LastErrorAt.IsZero() {
		t.Errorf("de = %+v", de)
	}
	if us.BreakerOpen || us.LastError != "" || us.InFlight != 0 {
		t.Errorf("us = %+v", us)
	}
	if n := s.Regions[2]; n.Name != "nowhere" || n.BreakerOpen || n.LastError != "" {
		t.Errorf("unknown region = %+v", n)
	}
	if strings.Contains(fmt.Sprintf("%+v", s), "127.0.0.1") {
		t.Errorf("status names an address: %+v", s)
	}
}

// What a pause holds: the mailbox by name, a region's mailboxes, but not a
// region's callback mailbox nor a row whose answer the region gave.
func TestPausesHold(t *testing.T) {
	ps := &pauses{regions: map[string]bool{"us": true}, mailboxes: map[string]bool{"jira:de:7": true, "slack:us:callback-9": true}}
	for _, tc := range []struct {
		mailbox string
		row     store.Payload
		byName  bool // held at the dispatcher
		rowHeld bool // held at the row
	}{
		{"jira:us:1", store.Payload{NewPayload: store.NewPayload{Region: "us"}}, true, true},
		{"jira:de:1", store.Payload{NewPayload: store.NewPayload{Region: "de"}}, false, false},
		{"jira:de:7", store.Payload{NewPayload: store.NewPayload{Region: "de"}}, true, true},
		{"slack:us:callback-4", store.Payload{NewPayload: store.NewPayload{Region: "us"}, Answered: true}, false, false},
		{"slack:us:callback-9", store.Payload{NewPayload: store.NewPayload{Region: "us"}, Answered: true}, true, true},
		{"legacy-name", store.Payload{NewPayload: store.NewPayload{Region: "us"}}, false, true},
	} {
		if got := ps.mailbox(tc.mailbox); got != tc.byName {
			t.Errorf("mailbox(%q) = %v, want %v", tc.mailbox, got, tc.byName)
		}
		if got := ps.holds(tc.mailbox, &tc.row); got != tc.rowHeld {
			t.Errorf("holds(%q, %+v) = %v, want %v", tc.mailbox, tc.row, got, tc.rowHeld)
		}
	}
	if (&pauses{}).mailbox("jira:us:1") {
		t.Error("nothing paused, yet a mailbox is held")
	}
}
