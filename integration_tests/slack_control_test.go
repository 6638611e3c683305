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
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// Slack's control-side answers on the real binary (issue 14 point 7):
// the loading modal the edge opens for a dialog action before the region
// is called, and Seer events routed by the linked identity. Slack's Web
// API is a fake on loopback that the Caddyfile names in slack_api_base;
// nothing here reaches the internet.

const (
	slackBotToken      = "xoxb-it-bot-token-4711"
	slackUserToken     = "xoxp-it-user-token-4711"
	slackControlSecret = "it-slack-signing-secret-4711"
)

// fakeSlackAPI is Slack's Web API: it records every call and answers ok.
type fakeSlackAPI struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []slackAPICall
}

type slackAPICall struct {
	method, auth, body string
	at                 time.Time
}

func newFakeSlackAPI(t *testing.T) *fakeSlackAPI {
	f := &fakeSlackAPI{}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.calls = append(f.calls, slackAPICall{strings.TrimPrefix(r.URL.Path, "/api/"), r.Header.Get("Authorization"), string(body), time.Now()})
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSlackAPI) seen() []slackAPICall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]slackAPICall(nil), f.calls...)
}

func (f *fakeSlackAPI) base() string { return f.srv.URL + "/api" }

// trustServers makes the binary trust these servers' certificates.
func trustServers(t *testing.T, srvs ...*httptest.Server) string {
	t.Helper()
	var b strings.Builder
	for _, s := range srvs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	}
	path := filepath.Join(t.TempDir(), "peers.pem")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return "SSL_CERT_FILE=" + path
}

// slackControlCaddyfile runs capture with the Slack control answers on,
// debug logging (so that the secrets check covers every line), and the
// drainer POSTing callbacks to callbackHost.
func (s *drainSetup) slackControlCaddyfile(admin, site *harness.Port, regions, slackAPI, callbackHost string) string {
	return fmt.Sprintf(`{
	debug
%s	sentry_silo {
		storage %s
%s		directory_cache 1s 1s
		drainer {
			poll_interval 200ms
			lease 2s
			callback_hosts %s
		}
	}
}
http://%s {
	route {
		sentry_webhook_capture {
			slack_signing_secret %s
			send_slack_response_from_control
			slack_api_base %s
		}
		respond "control" 200
	}
}
`, harness.GlobalOptions(admin), s.storage, regions, callbackHost, site.Addr, slackControlSecret, slackAPI)
}

// postSlack sends a signed Slack request and returns the answer's status.
func postSlack(t *testing.T, base, path, contentType string, body []byte) int {
	t.Helper()
	ts := fmt.Sprint(time.Now().Unix())
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", signSlack(slackControlSecret, ts, body))
	resp, err := drainClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// noSlackSecrets fails when a log line holds a token or the secret.
func noSlackSecrets(t *testing.T, logs string) {
	t.Helper()
	for _, s := range []string{slackBotToken, slackUserToken, slackControlSecret} {
		if strings.Contains(logs, s) {
			t.Errorf("the logs hold a secret (%.8s...)", s)
		}
	}
}

// A resolve dialog click: the edge opens the loading modal with the
// integration's bot token (not the user token the credential proxy
// would send) while it stores the click, within Slack's 3 seconds; the
// region is called later by the drainer, and its answer reaches the
// response_url after that.
func TestSlackLoadingModalFromControl(t *testing.T) {
	s := newDrainSetup(t)
	slack := newFakeSlackAPI(t)
	peer := newCallbackPeer(t, true)

	release := make(chan struct{})
	var (
		mu       sync.Mutex
		regionAt time.Time
	)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		if r.URL.Path == "/_health/" {
			return
		}
		mu.Lock()
		regionAt = time.Now()
		mu.Unlock()
		// Held until the test has seen that nothing reached the
		// response_url before the region answered.
		select {
		case <-release:
		case <-time.After(20 * time.Second):
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, slackRegionAnswer)
	})
	s.us.other.Store(&h)

	admin, site := harness.ReservePort(t), harness.ReservePort(t)
	_, peerPort, _ := net.SplitHostPort(peer.srv.Listener.Addr().String())
	c := harness.Start(t, admin, s.slackControlCaddyfile(admin, site, "\t\tregion us "+s.us.srv.URL+"\n", slack.base(), "127.0.0.1:"+peerPort),
		trustServers(t, slack.srv, peer.srv))
	s.seed(t, 0)
	mustExec(t, s.db, fmt.Sprintf(`INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES (100, 'slack', 'T1', 'ws', '{"access_token":%q,"user_access_token":%q}', 0)`, slackBotToken, slackUserToken))
	mustExec(t, s.db, `INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES (100, 1, 100, 0)`)

	payload, _ := json.Marshal(map[string]any{
		"type":         "block_actions",
		"team":         map[string]string{"id": "T1"},
		"trigger_id":   "trigger-4711",
		"response_url": peer.srv.URL + "/actions/T1/1/abc",
		"actions":      []map[string]string{{"action_id": "resolve-button", "value": "resolve_dialog", "action_ts": "1700000000.000100"}},
	})
	form := []byte(url.Values{"payload": {string(payload)}}.Encode())
	t0 := time.Now()
	if status := postSlack(t, site.URL(), "/extensions/slack/action/", "application/x-www-form-urlencoded", form); status != http.StatusOK {
		t.Fatalf("the click was answered %d, want 200\n%s", status, c.Logs())
	}
	answered := time.Since(t0)

	calls := slack.seen()
	if len(calls) != 1 {
		t.Fatalf("Slack API calls when the edge answered: %+v, want the views.open", calls)
	}
	modal := calls[0]
	t.Logf("views.open %v after the click; the edge answered after %v", modal.at.Sub(t0), answered)
	// The bound is Slack's: a trigger_id lives 3 s, and so does Slack's
	// wait for the answer.
	if modal.at.Sub(t0) > 3*time.Second || answered > 3*time.Second {
		t.Errorf("views.open after %v, answer after %v: over Slack's 3 s", modal.at.Sub(t0), answered)
	}
	var body struct {
		TriggerID string `json:"trigger_id"`
		View      struct {
			Type       string `json:"type"`
			ExternalID string `json:"external_id"`
			Title      struct {
				Text string `json:"text"`
			} `json:"title"`
		} `json:"view"`
	}
	_ = json.Unmarshal([]byte(modal.body), &body)
	if modal.method != "views.open" || modal.auth != "Bearer "+slackBotToken || body.TriggerID != "trigger-4711" ||
		body.View.Type != "modal" || body.View.ExternalID != "1700000000.000100" || body.View.Title.Text != "Resolve Issue" ||
		!strings.Contains(modal.body, `"Loading..."`) {
		t.Errorf("views.open call %s with the bot token %v, body %s", modal.method, modal.auth == "Bearer "+slackBotToken, modal.body)
	}

	waitFor(t, "the drainer called the region", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !regionAt.IsZero()
	})
	if posts := peer.received(); len(posts) != 0 {
		t.Errorf("the response_url got %q before the region answered", posts)
	}
	close(release)
	waitFor(t, "the region's answer POSTed to the response_url", 20*time.Second, func() bool { return len(peer.received()) == 1 })
	mu.Lock()
	t.Logf("region called %v after the click, %v after the modal", regionAt.Sub(t0), regionAt.Sub(modal.at))
	if !regionAt.After(modal.at) {
		t.Errorf("the region was called at %v, before the loading modal was opened at %v", regionAt, modal.at)
	}
	mu.Unlock()
	if got, want := peer.received()[0], "POST /actions/T1/1/abc application/json "+slackRegionAnswer; got != want {
		t.Errorf("response_url got %q, want %q", got, want)
	}
	if n := len(slack.seen()); n != 1 {
		t.Errorf("Slack API called %d times, want once", n)
	}
	if m := metricsOf(t, c.AdminAddr); !strings.Contains(m, `caddy_sentry_slack_calls_total{kind="loading_modal",outcome="ok"} 1`) {
		t.Errorf("metrics:\n%s", grepLines(m, "caddy_sentry_slack_calls_total"))
	}
	noSlackSecrets(t, c.Logs())
}

// slackEventsSeen records the Slack events a region is delivered.
type slackEventsSeen struct {
	mu     sync.Mutex
	events []string
}

func (e *slackEventsSeen) handler() *http.HandlerFunc {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.HasPrefix(r.URL.Path, "/extensions/slack/event") {
			e.mu.Lock()
			e.events = append(e.events, string(body))
			e.mu.Unlock()
		}
	})
	return &h
}

func (e *slackEventsSeen) with(marker string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.events {
		if strings.Contains(ev, marker) {
			n++
		}
	}
	return n
}

// A workspace shared by acme (region us) and beta (region de): a mention
// by a Slack user linked to a member of acme is delivered to us, not to
// the workspace's first region (de); a mention by an unlinked user is
// stored nowhere and the user is told why, with the bot token; any other
// event still goes to the first region.
func TestSlackSeerRoutingFromControl(t *testing.T) {
	s := newDrainSetup(t)
	de := newDrainRegion(t)
	slack := newFakeSlackAPI(t)
	var us, deSeen slackEventsSeen
	s.us.other.Store(us.handler())
	de.other.Store(deSeen.handler())

	admin, site := harness.ReservePort(t), harness.ReservePort(t)
	regions := "\t\tregion us " + s.us.srv.URL + "\n\t\tregion de " + de.srv.URL + "\n"
	c := harness.Start(t, admin, s.slackControlCaddyfile(admin, site, regions, slack.base(), "127.0.0.1:1"), trustServers(t, slack.srv))
	s.seed(t, 0)
	for _, q := range []string{
		`INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES (2, 'beta', 'de', 0)`,
		fmt.Sprintf(`INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES (100, 'slack', 'T1', 'ws', '{"access_token":%q}', 0)`, slackBotToken),
		`INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES (100, 2, 100, 0), (101, 1, 100, 0)`,
		`INSERT INTO sentry_identityprovider (id, type, external_id) VALUES (30, 'slack', 'T1')`,
		`INSERT INTO sentry_identity (id, idp_id, user_id, external_id, data) VALUES (500, 30, 7, 'U1', '{}')`,
		`INSERT INTO sentry_organizationmembermapping (id, organization_id, user_id, invite_status) VALUES (1, 1, 7, 0)`,
	} {
		mustExec(t, s.db, q)
	}
	event := func(id string, ev map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"type": "event_callback", "team_id": "T1", "event_id": id, "event": ev})
		return b
	}
	post := func(body []byte, want int) {
		t.Helper()
		if status := postSlack(t, site.URL(), "/extensions/slack/event/", "application/json", body); status != want {
			t.Fatalf("event answered %d, want %d\n%s", status, want, c.Logs())
		}
	}

	post(event("Ev-linked", map[string]any{"type": "app_mention", "user": "U1", "channel": "C1", "text": "<@BOT> why?", "ts": "1.5"}), http.StatusAccepted)
	post(event("Ev-unlinked", map[string]any{"type": "app_mention", "user": "U2", "channel": "C1", "text": "<@BOT> hi", "ts": "1.6", "thread_ts": "1.0"}), http.StatusOK)
	post(event("Ev-unfurl", map[string]any{"type": "link_shared", "user": "U1", "channel": "C1"}), http.StatusAccepted)

	waitFor(t, "the linked user's mention delivered to us and the unfurl to de", 20*time.Second, func() bool {
		return us.with("Ev-linked") == 1 && deSeen.with("Ev-unfurl") == 1
	})
	waitFor(t, "nothing left to deliver", 20*time.Second, func() bool { return s.pending(t) == 0 })
	if n := deSeen.with("Ev-linked"); n != 0 {
		t.Errorf("the mention also reached de, the workspace's first region, %d times", n)
	}
	if n := us.with("Ev-unlinked") + deSeen.with("Ev-unlinked"); n != 0 {
		t.Errorf("the unlinked user's mention was delivered %d times", n)
	}
	calls := slack.seen()
	if len(calls) != 1 {
		t.Fatalf("Slack API calls %+v, want the halt message", calls)
	}
	var msg struct {
		Channel  string `json:"channel"`
		User     string `json:"user"`
		Text     string `json:"text"`
		ThreadTS string `json:"thread_ts"`
	}
	_ = json.Unmarshal([]byte(calls[0].body), &msg)
	if calls[0].method != "chat.postEphemeral" || calls[0].auth != "Bearer "+slackBotToken || msg.Channel != "C1" || msg.User != "U2" || msg.ThreadTS != "1.0" || !strings.Contains(msg.Text, "/sentry link") {
		t.Errorf("halt message %s with the bot token %v: %s", calls[0].method, calls[0].auth == "Bearer "+slackBotToken, calls[0].body)
	}
	m := metricsOf(t, c.AdminAddr)
	for _, line := range []string{
		`caddy_sentry_slack_calls_total{kind="halt_message",outcome="ok"} 1`,
		`caddy_sentry_webhooks_captured_total{outcome="seer_halt",provider="slack"} 1`,
	} {
		if !strings.Contains(m, line) {
			t.Errorf("metrics lack %s:\n%s", line, grepLines(m, "slack"))
		}
	}
	noSlackSecrets(t, c.Logs())
}
