package integration_tests

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// The Slack and Discord interactions whose answer the drainer POSTs to a
// response_url (§3.6), on the real binary: where such a POST may go, and
// what a failed one does. The callback peers are real HTTPS servers on
// loopback; the binary trusts their certificate through SSL_CERT_FILE
// (Go's crypto/x509 reads it on Linux), and reaches them only because the
// Caddyfile names them, with their port, in callback_hosts.

// callbackRegion records the interactions a fake region receives and
// answers them as Sentry would: a Slack command or action with a JSON
// message, a Discord interaction with a message whose "data" is the
// follow-up.
type callbackRegion struct {
	mu   sync.Mutex
	seen []regionHit
}

type regionHit struct {
	path string
	body string
	at   time.Time
}

const (
	slackRegionAnswer   = `{"response_type":"ephemeral","text":"resolved"}`
	discordRegionAnswer = `{"type":4,"data":{"content":"resolved"}}`
)

func newCallbackRegion(s *drainSetup) *callbackRegion {
	r := &callbackRegion{}
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if req.URL.Path == "/_health/" {
			return
		}
		r.mu.Lock()
		r.seen = append(r.seen, regionHit{path: req.URL.Path, body: string(body), at: time.Now()})
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasPrefix(req.URL.Path, "/extensions/discord/"):
			_, _ = io.WriteString(w, discordRegionAnswer)
		case strings.HasPrefix(req.URL.Path, "/extensions/slack/event"):
			w.WriteHeader(http.StatusOK)
		default:
			_, _ = io.WriteString(w, slackRegionAnswer)
		}
	})
	s.us.other.Store(&h)
	return r
}

// hits returns how many requests the region got whose body contains
// marker, and when the first of them arrived.
func (r *callbackRegion) hits(marker string) (n int, first time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.seen {
		if strings.Contains(h.body, marker) {
			if n == 0 {
				first = h.at
			}
			n++
		}
	}
	return n, first
}

func (r *callbackRegion) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// callbackPeer is a response_url on loopback: it records every POST and
// answers with status (200 when 0).
type callbackPeer struct {
	srv    *httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	posts  []string
}

func newCallbackPeer(t *testing.T, https bool) *callbackPeer {
	p := &callbackPeer{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.posts = append(p.posts, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type")+" "+string(body))
		p.mu.Unlock()
		if s := p.status.Load(); s != 0 {
			w.WriteHeader(int(s))
		}
	})
	if https {
		p.srv = httptest.NewTLSServer(h)
	} else {
		p.srv = httptest.NewServer(h)
	}
	t.Cleanup(p.srv.Close)
	return p
}

func (p *callbackPeer) received() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.posts...)
}

func (p *callbackPeer) port() string {
	_, port, _ := net.SplitHostPort(p.srv.Listener.Addr().String())
	return port
}

// trustEnv makes the binary trust the peers' certificates (and nothing
// else: SSL_CERT_FILE replaces the system roots).
func trustEnv(t *testing.T, peers ...*callbackPeer) string {
	t.Helper()
	var b strings.Builder
	for _, p := range peers {
		if p.srv.Certificate() == nil {
			continue
		}
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	}
	path := filepath.Join(t.TempDir(), "peers.pem")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return "SSL_CERT_FILE=" + path
}

// startCallbacks runs one instance with the drainer options and env, and
// seeds Slack workspace T1 (integration 100) and Discord guild G1
// (integration 200), both in organization acme (region us).
func (s *drainSetup) startCallbacks(t *testing.T, drainer string, env ...string) *drainInstance {
	t.Helper()
	admin, site := harness.ReservePort(t), harness.ReservePort(t)
	c := harness.Start(t, admin, s.caddyfile(admin, site, drainer), env...)
	in := &drainInstance{c: c, base: site.URL()}
	s.seed(t, 0)
	mustExec(t, s.db, `INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES (100, 'slack', 'T1', 'ws', '{}', 0)`)
	mustExec(t, s.db, `INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES (100, 1, 100, 0)`)
	mustExec(t, s.db, `INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES (200, 'discord', 'G1', 'guild', '{}', 0)`)
	mustExec(t, s.db, `INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES (200, 1, 200, 0)`)
	return in
}

// post sends one request to the edge and wants status.
func (in *drainInstance) post(t *testing.T, path, contentType, body string, status int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, in.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := drainClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("POST %s answered %d %s, want %d\n%s", path, resp.StatusCode, b, status, in.c.Logs())
	}
}

// slackCommand posts a slash command whose text is marker.
func (in *drainInstance) slackCommand(t *testing.T, marker, responseURL string) {
	t.Helper()
	form := url.Values{"team_id": {"T1"}, "command": {"/sentry"}, "text": {marker}, "response_url": {responseURL}}
	in.post(t, "/extensions/slack/commands/", "application/x-www-form-urlencoded", form.Encode(), http.StatusOK)
}

// slackClick posts a button click (block_actions) whose action value is
// marker.
func (in *drainInstance) slackClick(t *testing.T, marker, responseURL string) {
	t.Helper()
	payload, _ := json.Marshal(map[string]any{
		"type":         "block_actions",
		"team":         map[string]string{"id": "T1"},
		"response_url": responseURL,
		"actions":      []map[string]string{{"action_id": "resolve", "value": marker}},
	})
	in.post(t, "/extensions/slack/action/", "application/x-www-form-urlencoded", url.Values{"payload": {string(payload)}}.Encode(), http.StatusOK)
}

// discordCommand posts an application command whose token is marker.
func (in *drainInstance) discordCommand(t *testing.T, marker string) {
	t.Helper()
	body := fmt.Sprintf(`{"type":2,"guild_id":"G1","application_id":"app1","token":%q,"data":{"name":"sentry"}}`, marker)
	in.post(t, "/extensions/discord/interactions/", "application/json", body, http.StatusOK)
}

type deadLetterJSON struct {
	ID         int64  `json:"id"`
	Mailbox    string `json:"mailbox"`
	Reason     string `json:"reason"`
	LastStatus int    `json:"last_status"`
	LastError  string `json:"last_error"`
	Attempts   int    `json:"attempts"`
	Answered   bool   `json:"region_answered"`
}

func (in *drainInstance) deadLetters(t *testing.T) []deadLetterJSON {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+in.c.AdminAddr+"/sentry_silo/dead_letters", nil)
	resp, err := drainClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		DeadLetters []deadLetterJSON `json:"dead_letters"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.DeadLetters
}

// Issue point (4), first half: a response_url the drainer must not POST
// to (loopback, private, metadata, not https, not a callback host) is
// accepted at the edge like any other (the answer tells nothing about the
// URL), and then reaches neither that address nor the region: the region's
// action is not idempotent and its answer would have nowhere to go. Each
// one is a dead letter "callback_refused" with the reason.
func TestCallbackRefusedURLsReachNothing(t *testing.T) {
	s := newDrainSetup(t)
	plain := newCallbackPeer(t, false)
	tlsPeer := newCallbackPeer(t, true)
	region := newCallbackRegion(s)
	// Bare names in callback_hosts widen the host list but never the
	// addresses: localhost, 127.0.0.1 and 10.0.0.5 stay refused without a
	// port, and cloud metadata even with one.
	a := s.startCallbacks(t, "callback_hosts localhost 127.0.0.1 10.0.0.5 169.254.169.254:443", trustEnv(t, tlsPeer))

	cases := []struct{ name, url, why string }{
		{"plain http to loopback", plain.srv.URL + "/x", "https"},
		{"https to a loopback literal", tlsPeer.srv.URL + "/x", "loopback"},
		{"https to localhost by name", "https://localhost:" + tlsPeer.port() + "/x", "loopback"},
		{"private address", "https://10.0.0.5/x", "private"},
		{"cloud metadata", "https://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"},
		{"look-alike host", "https://hooks.slack.com.example.net/commands/1", "not a callback host"},
		{"not a URL", "%zz", "response_url"},
	}
	t0 := time.Now()
	for i, tc := range cases {
		a.slackCommand(t, fmt.Sprint("refused-", i), tc.url)
	}
	settled := func() bool { return len(a.deadLetters(t)) == len(cases) && s.pending(t) == 0 }
	_ = harness.Poll(30*time.Second, settled) // not settled: reported below, with the details
	dls := a.deadLetters(t)
	t.Logf("%d dead letters %v after the first command", len(dls), time.Since(t0))
	if !settled() {
		t.Errorf("after 30s: %d dead letters %+v and %d pending rows, want %d dead letters", len(dls), dls, s.pending(t), len(cases))
	}
	for i, tc := range cases {
		if i >= len(dls) {
			break
		}
		dl := dls[i]
		if dl.Reason != "callback_refused" || !strings.Contains(dl.LastError, tc.why) || dl.Answered || dl.LastStatus != 0 {
			t.Errorf("%s: dead letter %+v, want reason callback_refused mentioning %q", tc.name, dl, tc.why)
		}
	}
	if got := plain.received(); len(got) != 0 {
		t.Errorf("the plain-http peer was reached: %q", got)
	}
	if got := tlsPeer.received(); len(got) != 0 {
		t.Errorf("the loopback https peer was reached: %q", got)
	}
	if n := region.total(); n != 0 {
		t.Errorf("the region was called %d times for callbacks that could not be delivered", n)
	}
	if m := metricsOf(t, a.c.AdminAddr); !strings.Contains(m, `caddy_sentry_deliveries_total{outcome="callback_refused",region="us"} 7`) {
		t.Errorf("metrics:\n%s", grepLines(m, "caddy_sentry_deliveries_total"))
	}
}

// Issue point (4), second half, Slack: a button click whose response_url
// POST fails reaches the region exactly once. Its answer is kept and only
// the POST is retried (3 POSTs, 5 s apart), in a mailbox of its own, so the
// workspace's next event is delivered at once; then the click is a dead
// letter "callback_failed" holding the answer, and replaying it POSTs the
// answer again without calling the region.
func TestCallbackFailureCallsRegionOnceSlack(t *testing.T) {
	s := newDrainSetup(t)
	peer := newCallbackPeer(t, true)
	peer.status.Store(http.StatusInternalServerError)
	region := newCallbackRegion(s)
	a := s.startCallbacks(t, "max_attempts 5\n\t\t\tbackoff 200ms 1.4 500ms\n\t\t\tcallback_hosts 127.0.0.1:"+peer.port(), trustEnv(t, peer))

	t0 := time.Now()
	a.slackClick(t, "click-1", peer.srv.URL+"/actions/T1/1/abc")
	a.post(t, "/extensions/slack/event/", "application/json", `{"type":"event_callback","team_id":"T1","event_id":"Ev-after-click"}`, http.StatusAccepted)

	waitFor(t, "the workspace's next event delivered", 20*time.Second, func() bool {
		n, _ := region.hits("Ev-after-click")
		return n == 1
	})
	_, eventAt := region.hits("Ev-after-click")
	postsBeforeEvent := len(peer.received())
	t.Logf("next event delivered %v after the click; the callback had %d POSTs by then", eventAt.Sub(t0), postsBeforeEvent)
	if postsBeforeEvent > 1 {
		t.Errorf("the next event waited for %d callback POSTs", postsBeforeEvent)
	}

	waitFor(t, "the click dead-lettered", 30*time.Second, func() bool { return len(a.deadLetters(t)) == 1 })
	dl := a.deadLetters(t)[0]
	clicks, _ := region.hits("click-1")
	posts := peer.received()
	t.Logf("region called %d times for the click; response_url POSTed %d times; dead letter %+v", clicks, len(posts), dl)
	if clicks != 1 {
		t.Errorf("the region was called %d times for one click, want 1", clicks)
	}
	if dl.Reason != "callback_failed" || dl.LastStatus != 500 || dl.Attempts != 3 || !dl.Answered {
		t.Errorf("dead letter %+v, want callback_failed after 3 POSTs answered 500, with the region's answer", dl)
	}
	want := "POST /actions/T1/1/abc application/json " + slackRegionAnswer
	if len(posts) != 3 {
		t.Errorf("response_url got %d POSTs, want 3", len(posts))
	}
	for _, p := range posts {
		if p != want {
			t.Errorf("response_url got %q, want %q", p, want)
		}
	}

	// The operator replays it once Slack is back: the answer is POSTed,
	// the region is not called again.
	peer.status.Store(0)
	if status, out := a.admin(t, "POST", fmt.Sprintf("/sentry_silo/dead_letters/%d/replay", dl.ID)); status != 200 {
		t.Fatalf("replay: %d %v", status, out)
	}
	waitFor(t, "the replayed answer POSTed", 20*time.Second, func() bool { return len(peer.received()) == 4 })
	waitFor(t, "the replayed row deleted", 20*time.Second, func() bool { return s.pending(t) == 0 })
	if clicks, _ := region.hits("click-1"); clicks != 1 {
		t.Errorf("the replay called the region again (%d calls)", clicks)
	}
	m := metricsOf(t, a.c.AdminAddr)
	for _, line := range []string{
		`caddy_sentry_deliveries_total{outcome="answered",region="us"} 1`,
		`caddy_sentry_deliveries_total{outcome="callback_retry",region="us"} 2`,
		`caddy_sentry_deliveries_total{outcome="callback_failed",region="us"} 1`,
		`caddy_sentry_deliveries_total{outcome="callback_delivered",region="us"} 1`,
	} {
		if !strings.Contains(m, line) {
			t.Errorf("metrics lack %s:\n%s", line, grepLines(m, "caddy_sentry_deliveries_total"))
		}
	}
}

// The same for Discord: the follow-up goes to discord.com, which this
// test cannot serve; whatever the POST meets there (no DNS here, a 401 for
// the made-up token elsewhere), it fails, and the command must reach the
// region exactly once. A second command of the same guild is delivered
// while the first one's follow-up is still being retried.
func TestCallbackFailureCallsRegionOnceDiscord(t *testing.T) {
	s := newDrainSetup(t)
	region := newCallbackRegion(s)
	a := s.startCallbacks(t, "max_attempts 3\n\t\t\tbackoff 200ms 1.4 500ms")

	a.discordCommand(t, "discord-cmd-1")
	waitFor(t, "the first command reached the region", 20*time.Second, func() bool {
		n, _ := region.hits("discord-cmd-1")
		return n >= 1
	})
	a.discordCommand(t, "discord-cmd-2")
	waitFor(t, "the second command reached the region", 20*time.Second, func() bool {
		n, _ := region.hits("discord-cmd-2")
		return n >= 1
	})
	if dls := a.deadLetters(t); len(dls) != 0 {
		t.Errorf("the second command waited until the first was given up: %+v", dls)
	}
	waitFor(t, "both commands dead-lettered", 40*time.Second, func() bool { return len(a.deadLetters(t)) == 2 })
	for _, marker := range []string{"discord-cmd-1", "discord-cmd-2"} {
		if n, _ := region.hits(marker); n != 1 {
			t.Errorf("%s reached the region %d times, want 1", marker, n)
		}
	}
	for _, dl := range a.deadLetters(t) {
		if dl.Reason != "callback_failed" || !dl.Answered {
			t.Errorf("dead letter %+v, want callback_failed with the region's answer", dl)
		}
	}
}

// §7 case 44 end to end: a Slack slash command with a response_url is
// answered at once; the drainer then forwards it to the region and POSTs
// the region's answer to the response_url.
func TestDrainSlackCallback(t *testing.T) {
	s := newDrainSetup(t)
	peer := newCallbackPeer(t, true)
	region := newCallbackRegion(s)
	a := s.startCallbacks(t, "callback_hosts 127.0.0.1:"+peer.port(), trustEnv(t, peer))

	t0 := time.Now()
	form := "team_id=T1&command=%2Fsentry&text=link&response_url=" + url.QueryEscape(peer.srv.URL+"/commands/1/abc")
	a.post(t, "/extensions/slack/commands/", "application/x-www-form-urlencoded", form, http.StatusOK)
	waitFor(t, "the answer POSTed to the response_url", 20*time.Second, func() bool { return len(peer.received()) == 1 })
	want := "POST /commands/1/abc application/json " + slackRegionAnswer
	if got := peer.received()[0]; got != want {
		t.Fatalf("response_url got %q, want %q", got, want)
	}
	region.mu.Lock()
	seen := region.seen
	region.mu.Unlock()
	if len(seen) != 1 || seen[0].path != "/extensions/slack/commands/" || seen[0].body != form {
		t.Fatalf("region saw %+v", seen)
	}
	t.Logf("slash command to response_url in %v", time.Since(t0))
	waitFor(t, "callback row deleted", 10*time.Second, func() bool { return s.pending(t) == 0 })
}
