package drain

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

func TestBackoffSchedule(t *testing.T) {
	c := Config{}.withDefaults()
	// §4.3 / §7 case 59: 4.2, 5.88, 8.232, 11.525, 16.135, 22.589, 31.624, 44.274, 60, 60 minutes.
	want := []float64{4.2, 5.88, 8.232, 11.5248, 16.13472, 22.588608, 31.6240512, 44.27367168, 60, 60}
	for i, w := range want {
		got := c.backoff(i + 1).Minutes()
		if d := got - w; d > 1e-4 || d < -1e-4 { // within 6 ms: delays are whole milliseconds
			t.Errorf("backoff(%d) = %v min, want %v", i+1, got, w)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	c := Config{}.withDefaults()
	tests := []struct {
		name       string
		attempts   int
		retryAfter time.Duration
		want       time.Duration
	}{
		{"no Retry-After", 1, 0, 252 * time.Second},
		{"shorter Retry-After keeps the backoff", 1, time.Minute, 252 * time.Second},
		{"longer Retry-After wins", 1, 10 * time.Minute, 10 * time.Minute},
		{"Retry-After clamped to the cap", 1, 5 * time.Hour, time.Hour},
		{"cap without Retry-After", 20, 0, time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.retryDelay(tc.attempts, tc.retryAfter); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"120", 120 * time.Second},
		{" 5 ", 5 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	}
	for _, tc := range tests {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestReplayHeaders(t *testing.T) {
	stored := http.Header{
		"Host":                {"sentry.io"},
		"Content-Length":      {"12"},
		"X-Forwarded-Proto":   {"https"},
		"Connection":          {"keep-alive, X-Per-Hop"},
		"X-Per-Hop":           {"1"},
		"Keep-Alive":          {"timeout=5"},
		"Transfer-Encoding":   {"chunked"},
		"Upgrade":             {"h2c"},
		"Te":                  {"trailers"},
		"Proxy-Authorization": {"Basic x"},
		"Content-Encoding":    {"gzip"},
		"X-Hub-Signature-256": {"sha256=abc"},
		"X-Slack-Signature":   {"v0=def"},
		"Authorization":       {"Bearer t"},
		"User-Agent":          {"GitHub-Hookshot/1"},
		"X-Multi":             {"a", "b"},
	}
	got := replayHeaders(stored)
	for _, gone := range []string{"Host", "Content-Length", "X-Forwarded-Proto", "Connection", "X-Per-Hop", "Keep-Alive",
		"Transfer-Encoding", "Upgrade", "Te", "Proxy-Authorization"} {
		if _, ok := got[gone]; ok {
			t.Errorf("%s was replayed", gone)
		}
	}
	for _, kept := range []string{"Content-Encoding", "X-Hub-Signature-256", "X-Slack-Signature", "Authorization", "User-Agent"} {
		if got.Get(kept) != stored.Get(kept) {
			t.Errorf("%s = %q, want %q", kept, got.Get(kept), stored.Get(kept))
		}
	}
	if v := got.Values("X-Multi"); len(v) != 2 {
		t.Errorf("multi-valued header = %v", v)
	}
	got.Set("X-Hub-Signature-256", "changed")
	if stored.Get("X-Hub-Signature-256") != "sha256=abc" {
		t.Error("replayHeaders aliases the stored headers")
	}
}

func TestClassify(t *testing.T) {
	now := time.Now()
	tests := []struct {
		status      int
		retryAfter  string
		kind        resultKind
		unreachable bool
		wantRA      time.Duration
	}{
		{200, "", delivered, false, 0},
		{202, "", delivered, false, 0},
		{204, "", delivered, false, 0},
		{302, "", delivered, false, 0},
		{400, "", dropped, false, 0},
		{401, "", dropped, false, 0},
		{403, "", dropped, false, 0},
		{404, "", dropped, false, 0},
		{409, "", dropped, false, 0},
		{405, "", retry, false, 0},
		{408, "", retry, false, 0},
		{413, "", retry, false, 0},
		{422, "", retry, false, 0},
		{429, "30", retry, false, 30 * time.Second},
		{500, "30", retry, false, 0},
		{502, "", retry, true, 0},
		{503, "30", retry, true, 30 * time.Second},
		{504, "", retry, true, 0},
	}
	for _, tc := range tests {
		resp := &http.Response{StatusCode: tc.status, Header: http.Header{}}
		if tc.retryAfter != "" {
			resp.Header.Set("Retry-After", tc.retryAfter)
		}
		got := classify(resp, now)
		if got.kind != tc.kind || got.unreachable != tc.unreachable || got.retryAfter != tc.wantRA || got.status != tc.status {
			t.Errorf("classify(%d) = %+v", tc.status, got)
		}
	}
}

func TestBreaker(t *testing.T) {
	b := newBreaker(3)
	t0 := time.Now()
	for i := 0; i < 2; i++ {
		if b.failed(t0) {
			t.Fatal("opened early")
		}
	}
	if b.answered(t0); b.isOpen() {
		t.Fatal("open after an answer")
	}
	for i := 0; i < 2; i++ {
		b.failed(t0)
	}
	if !b.failed(t0) || !b.isOpen() {
		t.Fatal("not open after 3 consecutive failures")
	}
	if b.startProbe(t0.Add(5*time.Millisecond), 10*time.Millisecond) {
		t.Fatal("probe before the interval")
	}
	if !b.startProbe(t0.Add(10*time.Millisecond), 10*time.Millisecond) {
		t.Fatal("no probe after the interval")
	}
	if b.startProbe(t0.Add(30*time.Millisecond), 10*time.Millisecond) {
		t.Fatal("two probes at once")
	}
	b.endProbe()
	if !b.answered(t0.Add(40*time.Millisecond)) || b.isOpen() {
		t.Fatal("an answer did not close the breaker")
	}
	if !b.answeredSince(t0.Add(39*time.Millisecond)) || b.answeredSince(t0.Add(41*time.Millisecond)) {
		t.Fatal("answeredSince")
	}
}

// A drained mailbox keeps its lease for a moment: a burst of captures costs
// one claim, not a claim and a release each; then the lease is handed back.
func TestHeldLease(t *testing.T) {
	st := newMemStore(nil)
	f := newFixture(t, st)
	cfg := f.fastConfig()
	cfg.PollInterval = 200 * time.Millisecond // idleHold 1s
	d := f.newDrainer(cfg)
	stop := f.run(d)
	name := mailboxName("jira", "us", "1")
	for i := 0; i < 10; i++ {
		f.insert("jira", "us", "1", 1)
		d.Wake(name)
		waitFor(t, "delivery", 5*time.Second, func() bool { return len(f.us.requests()) == i+1 })
	}
	claims, releases, live := st.leaseCounts()
	if claims != 1 || releases != 0 || live != 1 {
		t.Fatalf("claims %d, releases %d, live %d; want one claim held", claims, releases, live)
	}
	waitFor(t, "idle lease released", 5*time.Second, func() bool { _, r, l := st.leaseCounts(); return r == 1 && l == 0 })
	f.insert("jira", "us", "1", 1)
	d.Wake(name)
	waitFor(t, "delivery", 5*time.Second, func() bool { return len(f.us.requests()) == 11 })
	stop()
	if _, _, live := st.leaseCounts(); live != 0 {
		t.Fatalf("%d leases left after stop", live)
	}
}

// A stopped drainer leaves no connection open to its regions (a reload
// builds a new drainer with a new transport each time).
func TestStopClosesIdleConnections(t *testing.T) {
	st := newMemStore(nil)
	f := newFixture(t, st)
	var open atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	f.regions["us"] = u
	f.insert("jira", "us", "1", 3)
	stop := f.run(f.newDrainer(f.fastConfig()))
	waitFor(t, "deliveries", 30*time.Second, func() bool { return st.pendingCount() == 0 })
	if open.Load() == 0 {
		t.Fatal("no keep-alive connection to observe")
	}
	stop()
	waitFor(t, "connections closed", 5*time.Second, func() bool { return open.Load() == 0 })
}
