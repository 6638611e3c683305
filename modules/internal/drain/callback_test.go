package drain

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/mailbox"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// peerConfig is fastConfig for callback tests: the drainer trusts the
// HTTPS peer, may reach it (named with its port, the one way to a
// loopback callback), and retries a POST 100 ms apart.
func (f *fixture) peerConfig(peer *fakeRegion, moreHosts ...string) Config {
	cfg := f.fastConfig()
	pool := x509.NewCertPool()
	pool.AddCert(peer.srv.Certificate())
	cfg.CallbackRootCAs = pool
	cfg.CallbackHosts = append([]string{peer.srv.Listener.Addr().String()}, moreHosts...)
	cfg.CallbackRetryDelay = 100 * time.Millisecond
	// The tests count POSTs exactly; a POST that outlives the timeout is
	// rightly retried (at least once), so leave room for a TLS handshake
	// under -race on a busy machine (one such retry was seen with 2 s).
	cfg.RequestTimeout = 10 * time.Second
	return cfg
}

func callbackPayloadFor(provider, subject, url string) store.NewPayload {
	np := newPayload(provider, "us", subject, 0)
	np.DestinationType = store.DestinationCallback
	np.CallbackURL = url
	np.Body = []byte("interaction " + url)
	return np
}

func (f *fixture) insertPayloads(ps ...store.NewPayload) []int64 {
	f.t.Helper()
	res, err := f.st.InsertPayloads(context.Background(), ps)
	if err != nil {
		f.t.Fatal(err)
	}
	var ids []int64
	for _, r := range res {
		ids = append(ids, r.ID)
	}
	return ids
}

// §3.6: a callback payload goes to the region once; its answer goes to
// the response_url (Slack as is, Discord its data). A failed POST is
// retried on its own, CallbackAttempts times, and ends as a dead letter
// holding the answer; nothing ever calls the region a second time.
func testCallbacks(t *testing.T, newStore storeFactory) {
	tests := []struct {
		name         string
		provider     string
		regionAnswer string // "" with bigAnswer: over maxRegionBody
		bigAnswer    bool
		hookStatus   int
		wantPosts    int
		wantPosted   string
		wantReason   string // "" when delivered
		wantStatus   int
		wantError    string
		wantAnswered bool
	}{
		{name: "slack", provider: "slack", regionAnswer: `{"text":"done"}`, hookStatus: 200, wantPosts: 1, wantPosted: `{"text":"done"}`},
		{name: "discord follow-up", provider: "discord", regionAnswer: `{"type":4,"data":{"content":"done"}}`, hookStatus: 204, wantPosts: 1, wantPosted: `{"content":"done"}`},
		{name: "discord hook never ready", provider: "discord", regionAnswer: `{"type":4,"data":{"content":"done"}}`, hookStatus: 404, wantPosts: 3,
			wantPosted: `{"content":"done"}`, wantReason: store.ReasonCallbackFailed, wantStatus: 404, wantError: "not ready", wantAnswered: true},
		{name: "slack 500s", provider: "slack", regionAnswer: `{"text":"done"}`, hookStatus: 500, wantPosts: 3,
			wantPosted: `{"text":"done"}`, wantReason: store.ReasonCallbackFailed, wantStatus: 500, wantError: "answered 500", wantAnswered: true},
		{name: "slack url expired", provider: "slack", regionAnswer: `{"text":"done"}`, hookStatus: 404, wantPosts: 1,
			wantPosted: `{"text":"done"}`, wantReason: store.ReasonCallbackFailed, wantStatus: 404, wantError: "answered 404", wantAnswered: true},
		{name: "discord answer without data", provider: "discord", regionAnswer: `{"type":5}`, hookStatus: 200, wantPosts: 0,
			wantReason: store.ReasonCallbackFailed, wantError: "no data", wantAnswered: true},
		{name: "region answer too large", provider: "slack", bigAnswer: true, hookStatus: 200, wantPosts: 0,
			wantReason: store.ReasonCallbackFailed, wantStatus: 200, wantError: "too large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, newStore(t))
			f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
				w.Header().Set("Content-Type", "application/json")
				if tc.bigAnswer {
					_, _ = w.Write(bytes.Repeat([]byte("x"), maxRegionBody+1))
					return
				}
				_, _ = w.Write([]byte(tc.regionAnswer))
			})
			hook := newFakePeer(t)
			hook.status(tc.hookStatus)
			ids := f.insertPayloads(callbackPayloadFor(tc.provider, "T1", hook.srv.URL+"/hooks/abc"))
			f.run(f.newDrainer(f.peerConfig(hook)))
			// The outcome is counted right after the row is deleted or
			// moved: wait for both.
			outcome := OutcomeCallbackDelivered
			if tc.wantReason != "" {
				outcome = tc.wantReason
			}
			waitFor(t, "the callback delivered or given up", 30*time.Second, func() bool {
				return f.pending() == 0 && f.deliveries("us", outcome) >= 1
			})

			if n := len(f.us.requests()); n != 1 {
				t.Errorf("region called %d times, want 1", n)
			}
			posts := hook.requests()
			if len(posts) != tc.wantPosts {
				t.Errorf("%d POSTs to the response_url, want %d", len(posts), tc.wantPosts)
			}
			for _, got := range posts {
				if got.Method != "POST" || got.URI != "/hooks/abc" || string(got.Body) != tc.wantPosted || got.Header.Get("Content-Type") != "application/json" {
					t.Errorf("callback %s %s %q %v", got.Method, got.URI, got.Body, got.Header)
				}
			}
			dls := f.deadLetters()
			if tc.wantReason == "" {
				if len(dls) != 0 {
					t.Fatalf("dead letters %+v", dls)
				}
				if n := f.deliveries("us", OutcomeCallbackDelivered); n != 1 {
					t.Errorf("callback_delivered = %v", n)
				}
				return
			}
			if len(dls) != 1 {
				t.Fatalf("dead letters %+v, want one", dls)
			}
			dl := dls[0]
			if dl.ID != ids[0] || dl.Reason != tc.wantReason || dl.LastStatus != tc.wantStatus || !strings.Contains(dl.LastError, tc.wantError) ||
				dl.Answered != tc.wantAnswered || (tc.wantAnswered && string(dl.RegionAnswer) != tc.regionAnswer) {
				t.Errorf("dead letter %+v (answer %q), want %s status %d error ~%q answered %v",
					dl, dl.RegionAnswer, tc.wantReason, tc.wantStatus, tc.wantError, tc.wantAnswered)
			}
			if strings.Contains(dl.LastError, "/hooks/abc") {
				t.Errorf("the error holds the response_url: %q", dl.LastError)
			}
			if n := f.deliveries("us", OutcomeCallbackFailed); n != 1 {
				t.Errorf("callback_failed = %v", n)
			}
		})
	}
}

// A response_url the drainer may not POST to reaches nothing: not the
// URL, and not the region (its action would run for an answer that has
// nowhere to go). Each is a dead letter callback_refused saying why, and
// the strict mailbox goes on past it.
func testCallbackRefused(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	peer := newFakePeer(t)
	_, port, _ := net.SplitHostPort(peer.srv.Listener.Addr().String())
	plain := newFakeRegion(t)
	cases := []struct {
		name, provider, url, why string
	}{
		{"plain http", "slack", plain.srv.URL + "/secret-token", "https"},
		{"loopback listed without its port", "slack", "https://127.0.0.1:" + port + "/secret-token", "127.0.0.1 is a loopback address"},
		{"IPv6 loopback", "slack", "https://[::1]:" + port + "/secret-token", "loopback"},
		{"IPv4-mapped loopback", "slack", "https://[::ffff:127.0.0.1]:" + port + "/secret-token", "loopback"},
		{"localhost resolves to loopback", "slack", "https://localhost:" + port + "/secret-token", "localhost resolves only to refused addresses"},
		{"private address listed", "slack", "https://10.0.0.5/secret-token", "10.0.0.5 is a private address"},
		{"metadata listed with its port", "slack", "https://169.254.169.254/secret-token", "cloud metadata"},
		{"credentials in the URL", "slack", "https://user:pw@hooks.slack.com/secret-token", "credentials"},
		{"callback host on another port", "slack", "https://hooks.slack.com:8443/secret-token", "not a callback host of slack"},
		{"another provider's host", "slack", "https://discord.com/api/v10/webhooks/1/secret-token", "not a callback host of slack"},
		{"look-alike host", "discord", "https://discord.com.example.net/secret-token", "not a callback host of discord"},
		{"not a URL", "slack", "%zz", "not an absolute URL"},
		{"relative URL", "slack", "/secret-token", "not an absolute URL"},
		{"provider without callbacks", "jira", "https://hooks.slack.com/secret-token", "no response_url callbacks"},
	}
	var ps []store.NewPayload
	for _, tc := range cases {
		ps = append(ps, callbackPayloadFor(tc.provider, "T1", tc.url))
	}
	after := newPayload("slack", "us", "T1", 1) // same mailbox, after all of them
	for i := range ps {
		ps[i].MailboxName = after.MailboxName
	}
	ps = append(ps, after)
	f.insertPayloads(ps...)
	cfg := f.peerConfig(peer, "127.0.0.1", "::1", "localhost", "10.0.0.5", "169.254.169.254:443", "discord.com.example.net:8443")
	cfg.CallbackHosts = cfg.CallbackHosts[1:] // the peer is not reachable here
	f.run(f.newDrainer(cfg))
	waitFor(t, "all refused, the event delivered", 30*time.Second, func() bool { return f.pending() == 0 })

	dls := f.deadLetters()
	if len(dls) != len(cases) {
		t.Fatalf("%d dead letters, want %d: %+v", len(dls), len(cases), dls)
	}
	for i, tc := range cases {
		dl := dls[i]
		if dl.Reason != store.ReasonCallbackRefused || !strings.Contains(dl.LastError, tc.why) || dl.Answered || dl.LastStatus != 0 {
			t.Errorf("%s: dead letter reason %q error %q answered %v, want callback_refused saying %q", tc.name, dl.Reason, dl.LastError, dl.Answered, tc.why)
		}
		if strings.Contains(dl.LastError, "secret-token") {
			t.Errorf("%s: the error holds the response_url: %q", tc.name, dl.LastError)
		}
	}
	if got := f.us.bodies(); len(got) != 1 || got[0] != "T1#1" {
		t.Errorf("region got %q, want only the payload after the refused callbacks", got)
	}
	if n := len(peer.requests()) + len(plain.requests()); n != 0 {
		t.Errorf("%d requests reached the refused URLs", n)
	}
	if n := f.deliveries("us", OutcomeCallbackRefused); n != float64(len(cases)) {
		t.Errorf("callback_refused = %v, want %d", n, len(cases))
	}

	// DNS rebinding: the name resolved to a public address when it was
	// checked, and to loopback when the POST dialled. The dial-time guard
	// refuses it; the region had answered, and is not called again.
	t.Run("rebinding", func(t *testing.T) {
		f := newFixture(t, newStore(t))
		f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) { _, _ = w.Write([]byte(`{"text":"done"}`)) })
		ids := f.insertPayloads(callbackPayloadFor("slack", "T1", "https://localhost:"+port+"/secret-token"))
		cfg := f.peerConfig(peer, "localhost")
		cfg.CallbackHosts = cfg.CallbackHosts[1:]
		d := f.newDrainer(cfg)
		d.callbacks.lookup = func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
		}
		f.run(d)
		waitFor(t, "the callback given up", 30*time.Second, func() bool { return f.pending() == 0 })
		dls := f.deadLetters()
		if len(dls) != 1 || dls[0].ID != ids[0] || dls[0].Reason != store.ReasonCallbackRefused || !dls[0].Answered ||
			!strings.Contains(dls[0].LastError, "loopback") || string(dls[0].RegionAnswer) != `{"text":"done"}` {
			t.Fatalf("dead letters %+v", dls)
		}
		if n := len(f.us.requests()); n != 1 {
			t.Errorf("region called %d times, want 1", n)
		}
		if n := len(peer.requests()); n != 0 {
			t.Errorf("the rebound address was reached %d times", n)
		}
	})
}

// A callback whose POST keeps failing holds nothing: the workspace's
// strictly ordered mailbox goes on at once while the POST is retried in
// the callback's own mailbox. The region is called once; the dead letter
// keeps its answer, and replaying it POSTs that answer, nothing more.
func testCallbackRetryHoldsNothing(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	const answer = `{"replace_original":true,"text":"resolved"}`
	f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
		if strings.HasPrefix(string(body), "interaction") {
			_, _ = w.Write([]byte(answer))
		}
	})
	peer := newFakePeer(t)
	peer.status(500)
	click := callbackPayloadFor("slack", "T1", peer.srv.URL+"/actions/1")
	ps := []store.NewPayload{click}
	for i := 1; i <= 3; i++ {
		ps = append(ps, newPayload("slack", "us", "T1", i))
	}
	ids := f.insertPayloads(ps...)
	cfg := f.peerConfig(peer)
	cfg.CallbackRetryDelay = 500 * time.Millisecond
	cfg.MaxAttempts = 10
	f.run(f.newDrainer(cfg))

	regionCalls := func(prefix string) int {
		n := 0
		for _, b := range f.us.bodies() {
			if strings.HasPrefix(b, prefix) {
				n++
			}
		}
		return n
	}
	waitFor(t, "the events behind the click delivered", 30*time.Second, func() bool { return regionCalls("T1#") == 3 })
	// The bound is the behaviour: the events must not wait for a retry.
	if n := len(peer.requests()); n > 1 {
		t.Errorf("the events waited for %d POSTs of the click's answer", n)
	}
	if got := f.us.bodies()[1:]; fmt.Sprint(got) != "[T1#1 T1#2 T1#3]" {
		t.Errorf("events delivered as %v", got)
	}
	waitFor(t, "the click given up", 30*time.Second, func() bool { return len(f.deadLetters()) == 1 })
	dl := f.deadLetters()[0]
	if dl.ID != ids[0] || dl.Reason != store.ReasonCallbackFailed || dl.Attempts != 3 || dl.LastStatus != 500 ||
		!dl.Answered || string(dl.RegionAnswer) != answer || dl.MailboxName != "slack:us:callback-"+fmt.Sprint(ids[0]) {
		t.Fatalf("dead letter %+v", dl)
	}
	if n := regionCalls("interaction"); n != 1 {
		t.Fatalf("the region was called %d times for one click", n)
	}
	if n := len(peer.requests()); n != 3 {
		t.Fatalf("%d POSTs, want 3", n)
	}

	peer.status(200)
	if _, err := f.st.ReplayDeadLetter(context.Background(), dl.ID, f.now()); err != nil {
		t.Fatal(err)
	}
	// The counter moves right after the row is deleted: wait for both.
	waitFor(t, "the replayed answer POSTed", 30*time.Second, func() bool {
		return f.pending() == 0 && len(peer.requests()) == 4 && f.deliveries("us", OutcomeCallbackDelivered) == 1
	})
	if got := peer.requests()[3]; string(got.Body) != answer || got.URI != "/actions/1" {
		t.Errorf("replay posted %s %q", got.URI, got.Body)
	}
	if n := regionCalls("interaction"); n != 1 {
		t.Errorf("the replay called the region (%d calls)", n)
	}
	for outcome, want := range map[string]float64{
		OutcomeAnswered: 1, OutcomeCallbackRetry: 2, OutcomeCallbackFailed: 1, OutcomeCallbackDelivered: 1,
		OutcomeDelivered: 3, OutcomeRetry: 0, OutcomeAttemptsExceeded: 0,
	} {
		if got := f.deliveries("us", outcome); got != want {
			t.Errorf("deliveries{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}

// An answered callback goes to Slack or Discord, not to the region: the
// region's open breaker does not hold it.
func testCallbackIgnoresBreaker(t *testing.T, newStore storeFactory) {
	f := newFixture(t, newStore(t))
	f.us.status(503)
	peer := newFakePeer(t)
	f.insert("jira", "us", "j", 3)
	cfg := f.peerConfig(peer)
	cfg.BreakerFailures = 2
	cfg.BreakerProbeInterval = time.Hour // stays open
	d := f.newDrainer(cfg)
	f.run(d)
	waitFor(t, "the breaker open", 30*time.Second, func() bool { return d.BreakerOpen("us") })

	id := f.insertPayloads(callbackPayloadFor("slack", "T1", peer.srv.URL+"/commands/1"))[0]
	box := "slack:us:callback-" + fmt.Sprint(id)
	if err := f.st.RecordRegionAnswer(context.Background(), id, box, []byte(`{"text":"answered before the outage"}`), 200, f.now()); err != nil {
		t.Fatal(err)
	}
	d.Wake(box)
	waitFor(t, "the answer POSTed", 30*time.Second, func() bool { return len(peer.requests()) == 1 })
	if !d.BreakerOpen("us") {
		t.Fatal("the breaker closed meanwhile: the test shows nothing")
	}
	if got := string(peer.requests()[0].Body); got != `{"text":"answered before the outage"}` {
		t.Errorf("posted %q", got)
	}
	waitFor(t, "the callback row deleted", 30*time.Second, func() bool {
		_, ok := f.payload(box, id)
		return !ok
	})
}

func TestCallbackMailboxNames(t *testing.T) {
	p := &store.Payload{ID: 4711, NewPayload: store.NewPayload{Provider: "slack", Region: "us", MailboxName: "slack:us:13:42"}}
	if got := callbackMailbox(p); got != "slack:us:callback-4711" {
		t.Fatalf("callbackMailbox = %q", got)
	}
	for name, want := range map[string]bool{
		"slack:us:callback-4711":      true,
		"discord:de:callback-1":       true,
		"slack:us:13":                 false,
		"slack:us:13:42":              false,
		"slack:us:callback-4711:3":    false,
		"slack:us:callback-4711:push": false,
		"callback-1":                  false,
		"slack:callback-1":            false,
		"github:us:1234":              false,
	} {
		m, ok := mailbox.Parse(name)
		if got := ok && isCallback(m); got != want {
			t.Errorf("isCallback(Parse(%q)) = %v, want %v", name, got, want)
		}
	}
	// The breaker check and the skip-on-failure rule read the usual
	// parts: a callback mailbox keeps its payload's provider and region,
	// and the region's open breaker holds the region's other mailboxes
	// (whatever their form), never a callback mailbox.
	if m, ok := mailbox.Parse("slack:us:callback-4711"); !ok || m.Region != "us" || m.Provider != "slack" {
		t.Fatalf("callback mailbox parts %+v, %v", m, ok)
	}
	d := New(Config{BreakerFailures: 1}, nil, func(name string) (*url.URL, bool) { return nil, name == "us" }, nil, nil)
	d.breakers.record("us", d.breakers.get("us"), true)
	if !d.BreakerOpen("us") {
		t.Fatal("the us breaker did not open")
	}
	for name, want := range map[string]bool{
		"slack:us:13":              true,
		"slack:us:13:42":           true,
		"github:us:1:2:push":       true,
		"slack:us:callback-4711:3": true,
		"slack:us:callback-4711":   false,
		"slack:de:13":              false,
		"slack:0":                  false,
		"":                         false,
	} {
		if got := d.mailboxPaused(name); got != want {
			t.Errorf("mailboxPaused(%q) = %v, want %v", name, got, want)
		}
	}
}

// The static half of the policy, with a fake resolver.
func TestCallbackPolicyCheck(t *testing.T) {
	c, err := newCallbackPolicy([]string{"chat.corp:8443", "hooks.example.com", "10.1.2.3:443", "lo.test"})
	if err != nil {
		t.Fatal(err)
	}
	dns := map[string][]string{
		"hooks.slack.com":   {"3.3.3.3"},
		"chat.corp":         {"10.0.0.7"},
		"hooks.example.com": {"192.168.0.9", "4.4.4.4"}, // one public address is enough
		"lo.test":           {"127.0.0.1", "::1"},
	}
	c.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		addrs, ok := dns[host]
		if !ok {
			return nil, errors.New("no such host")
		}
		var out []netip.Addr
		for _, a := range addrs {
			out = append(out, netip.MustParseAddr(a))
		}
		return out, nil
	}
	tests := []struct {
		provider, url string
		refusal       string // "" when allowed
	}{
		{"slack", "https://hooks.slack.com/commands/T1/1/x", ""},
		{"slack", "https://HOOKS.SLACK.COM./actions/T1/1/x", ""},
		{"slack", "https://hooks.slack.com:443/x", ""},
		{"slack", "https://hooks.slack-gov.com/commands/x", ""}, // no DNS answer: let through, the dial checks
		{"discord", "https://discord.com/api/v10/webhooks/1/tok", ""},
		{"discord", "https://discordapp.com/api/webhooks/1/tok", ""},
		{"slack", "https://chat.corp:8443/hooks/x", ""},   // named with its port: private allowed
		{"slack", "https://hooks.example.com:9999/x", ""}, // bare entry: any port
		{"discord", "https://10.1.2.3/x", ""},             // named with its port (443)
		{"slack", "https://chat.corp/hooks/x", "not a callback host"},
		{"slack", "https://chat.corp:8444/hooks/x", "not a callback host"},
		{"slack", "https://lo.test/x", "lo.test resolves only to refused addresses: address refused: 127.0.0.1 is a loopback address"},
		{"slack", "http://hooks.slack.com/x", `the scheme must be https, not "http"`},
		{"slack", "HTTPS://hooks.slack.com/x", ""},
		{"slack", "https://hooks.slack.com.evil.example/x", "not a callback host of slack"},
		{"slack", "https://evilhooks.slack.com/x", "not a callback host of slack"},
		{"discord", "https://hooks.slack.com/x", "not a callback host of discord"},
		{"slack", "https://10.1.2.3:444/x", "not a callback host"},
		{"slack", "https://u@hooks.slack.com/x", "credentials"},
		{"slack", "hooks.slack.com/x", "not an absolute URL"},
		{"slack", "", "not an absolute URL"},
		{"github", "https://hooks.slack.com/x", `provider "github" has no response_url callbacks`},
	}
	for _, tc := range tests {
		err := c.check(context.Background(), tc.provider, tc.url)
		switch {
		case tc.refusal == "" && err != nil:
			t.Errorf("check(%s, %q) = %v, want allowed", tc.provider, tc.url, err)
		case tc.refusal != "" && (err == nil || !errors.Is(err, errCallbackRefused) || !strings.Contains(err.Error(), tc.refusal)):
			t.Errorf("check(%s, %q) = %v, want refused: %q", tc.provider, tc.url, err, tc.refusal)
		}
	}
	if err := CheckCallbackHost("https://x"); err == nil || !strings.Contains(err.Error(), `callback_hosts "https://x"`) {
		t.Errorf("CheckCallbackHost = %v", err)
	}
	if _, err := newCallbackPolicy([]string{"a:0"}); err == nil {
		t.Error("bad port accepted")
	}
}
