package integration_tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

// §7 cases 37-54 against the real binary on the SQLite default storage.
func TestCaptureProviders(t *testing.T) {
	s := newCaptureSetup(t, captureOptions{handler: "\t\tbucket_threshold 5\n\t\tmax_body_size 64KB"})

	// Case 37, with a body that is not UTF-8: one row per region, the
	// raw bytes, every header, the full path and query.
	raw := append([]byte(`{"installation":{"id":555},"repository":{"id":4242},"note":"`), 0xff, 0xfe, 0xc3, '"', '}')
	resp, body := s.post(t, "/extensions/github/webhook/?x=1&y=%2F", hdrs("Content-Type", "application/json",
		"X-GitHub-Event", "push", "X-GitHub-Delivery", "case-37", "X-Hub-Signature-256", "sha256=feed"), raw)
	if resp.StatusCode != 202 || len(body) != 0 {
		t.Fatalf("case 37: %d %q\n%s", resp.StatusCode, body, s.c.Logs())
	}
	rows := s.rows(t)
	if len(rows) != 2 {
		t.Fatalf("case 37: %d rows", len(rows))
	}
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r.mailbox+"@"+r.region] = true
		if !bytes.Equal(r.body, raw) {
			t.Errorf("body not byte-exact: %q", r.body)
		}
		if r.provider != "github" || r.method != "POST" || r.path != "/extensions/github/webhook/?x=1&y=%2F" ||
			!r.integration.Valid || r.integration.Int64 != 10 || r.destination != "sentry_region" || r.deliveryKey.String != "case-37" {
			t.Errorf("row %+v", r)
		}
		if !containsAll(r.headers, "X-Hub-Signature-256", "sha256=feed", "X-Github-Event", "push") {
			t.Errorf("headers %s", r.headers)
		}
	}
	// GitHub's mailboxes are split by repository (4242 % 100) and event.
	if !seen["github:us:10:42:push@us"] || !seen["github:de:10:42:push@de"] {
		t.Fatalf("case 37 mailboxes: %v", seen)
	}

	// A second copy of the same delivery is acknowledged, not stored.
	if resp, _ := s.post(t, "/extensions/github/webhook/", githubPush("case-37"), raw); resp.StatusCode != 202 {
		t.Fatalf("duplicate: %d", resp.StatusCode)
	}
	if n := s.count(t); n != 2 {
		t.Fatalf("duplicate stored: %d rows", n)
	}

	slackEvent := []byte(`{"type":"url_verification","challenge":"x-challenge"}`)
	slackCommand := []byte(url.Values{"team_id": {"T123"}, "command": {"/sentry"}, "response_url": {s.us.URL + "/hook"}}.Encode())
	discordPing := []byte(`{"type":1}`)
	discordCommand := []byte(`{"type":2,"guild_id":"G1","application_id":"app1","token":"tok1"}`)
	issueUpdated := []byte(`{"changelog":{"items":[]},"issue":{"id":"10042"}}`)

	cases := []struct {
		name     string
		path     string
		header   http.Header
		body     []byte
		status   int
		rows     int    // rows added
		respBody string // exact, when set
		mailbox  string // a mailbox the new rows must include
	}{
		{"38 installation goes to control", "/extensions/github/webhook/", hdrs("Content-Type", "application/json", "X-GitHub-Event", "installation"), []byte(`{"installation":{"id":555}}`), 200, 0, "control", ""},
		{"39 star is dropped", "/extensions/github/webhook/", hdrs("Content-Type", "application/json", "X-GitHub-Event", "star"), []byte(`{"installation":{"id":555}}`), 202, 0, "", ""},
		{"40 unknown installation", "/extensions/github/webhook/", githubPush("u"), []byte(`{"installation":{"id":1}}`), 400, 0, "", ""},
		{"40 body not JSON", "/extensions/github/webhook/", githubPush("v"), []byte(`not json`), 400, 0, "", ""},
		{"github enterprise", "/extensions/github-enterprise/webhook/", hdrs("Content-Type", "application/json", "X-GitHub-Event", "push", "X-GitHub-Enterprise-Host", "ghe.example.com"), []byte(`{"installation":{"id":77}}`), 202, 1, "", "github_enterprise:us:11:push"},
		{"github enterprise without host", "/extensions/github-enterprise/webhook/", githubPush("w"), []byte(`{"installation":{"id":77}}`), 400, 0, "", ""},
		{"41 gitlab without token", "/extensions/gitlab/webhook/", nil, []byte(`{}`), 400, 0, "", ""},
		{"41 gitlab token", "/extensions/gitlab/webhook/", hdrs("X-Gitlab-Token", "gitlab.example.com:grp:s3cret", "X-Gitlab-Event-UUID", "gl-1"), []byte(`{"project":{"id":4217}}`), 202, 1, "", "gitlab:us:12"},
		{"43 slack challenge at the edge", "/extensions/slack/event/", slackHeaders("application/json", slackEvent), slackEvent, 200, 0, `{"challenge":"x-challenge"}`, ""},
		{"slack forged signature", "/extensions/slack/event/", hdrs("Content-Type", "application/json", "X-Slack-Request-Timestamp", fmt.Sprint(time.Now().Unix()), "X-Slack-Signature", "v0=00"), slackEvent, 401, 0, "", ""},
		{"44 slack command with response_url", "/extensions/slack/commands/", slackHeaders("application/x-www-form-urlencoded", slackCommand), slackCommand, 200, 1, "", "slack:de:13"},
		{"45 slack event of a removed installation", "/extensions/slack/event/", slackHeaders("application/json", []byte(`{"type":"event_callback","team_id":"TGONE"}`)), []byte(`{"type":"event_callback","team_id":"TGONE"}`), 202, 0, "", ""},
		{"slack event", "/extensions/slack/event/", slackHeaders("application/json", []byte(`{"type":"event_callback","team_id":"T123","event_id":"Ev1"}`)), []byte(`{"type":"event_callback","team_id":"T123","event_id":"Ev1"}`), 202, 1, "", "slack:de:13"},
		{"46 discord ping", "/extensions/discord/interactions/", discordHeaders(discordPing), discordPing, 200, 0, `{"type":1}`, ""},
		{"46 discord bad signature", "/extensions/discord/interactions/", hdrs("X-Signature-Ed25519", strings.Repeat("00", 64), "X-Signature-Timestamp", "1"), discordPing, 401, 0, "", ""},
		{"47 discord command deferred", "/extensions/discord/interactions/", discordHeaders(discordCommand), discordCommand, 200, 1, `{"type":5,"data":{"flags":64}}`, "discord:de:14"},
		{"48 jira issue-updated", "/extensions/jira/issue-updated/", hdrs("Authorization", "JWT "+jiraConnectJWT(t, "jira-client-key", captureJiraSecret)), []byte(`{"issue":{}}`), 202, 1, "", "jira:us:16"},
		{"48 jira forged", "/extensions/jira/issue-updated/", hdrs("Authorization", "JWT "+jiraConnectJWT(t, "jira-client-key", "guess")), []byte(`{}`), 401, 0, "", ""},
		{"48 jira installed goes to control", "/extensions/jira/installed/", nil, []byte(`{}`), 200, 0, "control", ""},
		{"48 jira in two regions", "/extensions/jira/issue-updated/", hdrs("Authorization", "JWT "+jiraConnectJWT(t, "jira-two", captureJiraSecret)), []byte(`{}`), 500, 0, "", ""},
		{"49 jira server", "/extensions/jira-server/issue-updated/" + jiraServerPathToken(t, 18, captureJSSecret) + "/", nil, issueUpdated, 202, 1, "", "jira_server:us:18"},
		{"49 jira server without changelog", "/extensions/jira-server/issue-updated/" + jiraServerPathToken(t, 18, captureJSSecret) + "/", nil, []byte(`{"issue":{}}`), 200, 0, "", ""},
		{"49 jira server invalid token", "/extensions/jira-server/issue-updated/nope/", nil, issueUpdated, 200, 0, "", ""},
		{"50 msteams install", "/extensions/msteams/webhook/", nil, []byte(`{"type":"installationUpdate","action":"add"}`), 200, 0, "control", ""},
		{"50 msteams card action", "/extensions/msteams/webhook/", nil, []byte(`{"type":"message","value":{"payload":{"integrationId":19}}}`), 202, 1, "", "msteams:de:19"},
		{"msteams unknown team", "/extensions/msteams/webhook/", nil, []byte(`{"type":"message","channelData":{"team":{"id":"nope"}}}`), 400, 0, "", ""},
		{"vsts", "/extensions/vsts/issue-updated/", nil, []byte(`{"id":"n1","resourceContainers":{"collection":{"id":"coll-1"}}}`), 202, 1, "", "vsts:us:20"},
		{"vsts unknown collection", "/extensions/vsts/issue-updated/", nil, []byte(`{"resourceContainers":{"collection":{"id":"x"}}}`), 400, 0, "", ""},
		{"51 bitbucket org 2", "/extensions/bitbucket/organizations/2/webhook/", nil, []byte(`{}`), 202, 1, "", "bitbucket:de:2"},
		{"51 bitbucket unknown org", "/extensions/bitbucket/organizations/999/webhook/", nil, []byte(`{}`), 200, 0, "control", ""},
		{"bitbucket server", "/extensions/bitbucket-server/organizations/1/webhook/5/", nil, []byte(`{}`), 202, 1, "", "bitbucket_server:us:1"},
		{"plugin webhook", "/plugins/github/organizations/1/webhook/", nil, []byte(`{}`), 202, 1, "", "plugins:us:1"},
		{"52 plugin unknown org", "/plugins/github/organizations/999/webhook/", nil, []byte(`{}`), 400, 0, "", ""},
		{"53 vercel goes to control", "/extensions/vercel/webhook/", nil, []byte(`{}`), 200, 0, "control", ""},
		{"53 slack setup is not parsed", "/extensions/slack/setup/", nil, nil, 200, 0, "control", ""},
		{"53 github link is not parsed", "/extensions/github/link/", nil, nil, 200, 0, "control", ""},
		{"too large", "/extensions/github/webhook/", githubPush("big"), bytes.Repeat([]byte("x"), 70_000), 413, 0, "", ""},
		{"not a webhook path", "/api/0/organizations/acme/", nil, nil, 200, 0, "control", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.rows(t)
			resp, body := s.post(t, tc.path, tc.header, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tc.status, body)
			}
			if tc.respBody != "" && string(body) != tc.respBody {
				t.Fatalf("body %q, want %q", body, tc.respBody)
			}
			after := s.rows(t)
			if len(after)-len(before) != tc.rows {
				t.Fatalf("%d rows added, want %d", len(after)-len(before), tc.rows)
			}
			if tc.mailbox != "" {
				added := after[len(before):]
				found := false
				for _, r := range added {
					found = found || r.mailbox == tc.mailbox
				}
				if !found {
					t.Fatalf("no row in %s: %+v", tc.mailbox, added)
				}
			}
		})
	}

	// Callback rows (cases 44, 47) are durable jobs for the first region.
	for _, r := range s.rows(t) {
		switch r.provider {
		case "slack":
			if r.destination == "response_url" && r.callbackURL.String != s.us.URL+"/hook" {
				t.Errorf("slack callback row %+v", r)
			}
		case "discord":
			if r.destination != "response_url" || r.callbackURL.String != "https://discord.com/api/v10/webhooks/app1/tok1" {
				t.Errorf("discord callback row %+v", r)
			}
		case "bitbucket":
			if r.integration.Valid {
				t.Errorf("bitbucket row has an integration id: %+v", r)
			}
		}
	}

	// Case 42: past bucket_threshold (5 here) an integration's hooks go
	// to bucketed mailboxes, project.id % 100.
	var last string
	for i := 0; i < 6; i++ {
		resp, _ := s.post(t, "/extensions/gitlab/webhook/", hdrs("X-Gitlab-Token", "gitlab.example.com:grp:s3cret", "X-Gitlab-Event-UUID", fmt.Sprint("bucket-", i)), []byte(`{"project":{"id":4217}}`))
		if resp.StatusCode != 202 {
			t.Fatalf("gitlab %d: %d", i, resp.StatusCode)
		}
		rows := s.rows(t)
		last = rows[len(rows)-1].mailbox
	}
	if last != "gitlab:us:12:17" {
		t.Fatalf("case 42: last mailbox %q, want gitlab:us:12:17", last)
	}

	// Slack interactive action without response_url: answered by the
	// regions synchronously (all of them; the first good answer).
	action := []byte(url.Values{"payload": {`{"type":"block_actions","team":{"id":"T123"},"actions":[{"action_id":"resolve"}]}`}}.Encode())
	resp, body = s.post(t, "/extensions/slack/action/", slackHeaders("application/x-www-form-urlencoded", action), action)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"region"`) || resp.Header.Get("X-Sentry-Proxy-URL") == "" {
		t.Fatalf("slack action: %d %q %v", resp.StatusCode, body, resp.Header)
	}

	// Metrics: captured webhooks by provider and outcome.
	mresp, err := http.Get("http://" + s.c.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var mbuf bytes.Buffer
	_, _ = mbuf.ReadFrom(mresp.Body)
	mresp.Body.Close()
	if !containsAll(mbuf.String(), `caddy_sentry_webhooks_captured_total{outcome="captured",provider="github"}`, "caddy_sentry_webhook_capture_duration_seconds_bucket") {
		t.Errorf("metrics missing:\n%s", grepLines(mbuf.String(), "caddy_sentry_webhook"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// 200 concurrent captures are all acknowledged and all stored; then a
// reload under load loses nothing; then shedding.
func TestCaptureConcurrentAndReload(t *testing.T) {
	s := newCaptureSetup(t, captureOptions{})
	const n = 200
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(fmt.Sprintf(`{"installation":{"id":555},"repository":{"id":%d}}`, i))
			req, _ := http.NewRequest(http.MethodPost, s.base+"/extensions/github/webhook/", bytes.NewReader(body))
			req.Header = githubPush(fmt.Sprint("conc-", i))
			resp, err := captureClient.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 202 {
			t.Fatalf("request %d: %d\n%s", i, c, s.c.Logs())
		}
	}
	if got := s.count(t); got != 2*n {
		t.Fatalf("%d rows, want %d", got, 2*n)
	}

	// Reload (forced) while captures are running: every request still
	// gets its 202 and its rows. Each request has its own connection: a
	// keep-alive connection the old server closes as idle can swallow a
	// request before any handler sees it, which no handler can help.
	fresh := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	stop := make(chan struct{})
	var mu sync.Mutex
	sent, failures := 0, []string{}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("reload-%d-%d", w, i)
				req, _ := http.NewRequest(http.MethodPost, s.base+"/extensions/github/webhook/", strings.NewReader(`{"installation":{"id":555}}`))
				req.Header = githubPush(id)
				resp, err := fresh.Do(req)
				mu.Lock()
				sent++
				if err != nil {
					failures = append(failures, id+": "+err.Error())
				} else {
					if resp.StatusCode != 202 {
						failures = append(failures, fmt.Sprintf("%s: %d", id, resp.StatusCode))
					}
					resp.Body.Close()
				}
				mu.Unlock()
			}
		}()
	}
	// Each reload comes after 200 more captures, and the load runs for
	// 200 more after the last: about 150ms each on an idle 2-core
	// machine, and as many captures, so the same share of them is in
	// flight at a reload, on a slower one.
	underLoad := func(more int) {
		t.Helper()
		mu.Lock()
		target := sent + more
		mu.Unlock()
		waitFor(t, fmt.Sprintf("%d more captures under load", more), 60*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return sent >= target
		})
	}
	admin := s.c.Admin
	for i := 0; i < 3; i++ {
		underLoad(200)
		s.c.Reload(t, s.caddyfile(admin, fmt.Sprintf("\t\tbucket_threshold %d", 3000+i)))
	}
	underLoad(200)
	close(stop)
	wg.Wait()
	// Connections still queued on the old listener when a reload closes
	// it are reset by the kernel before any handler sees them (Caddy's
	// reuseport listeners on Linux); a client retries those. What must
	// hold: no such failure is an HTTP answer other than 202, and every
	// 202 has its rows.
	acked := sent - len(failures)
	for _, f := range failures {
		if !strings.Contains(f, "EOF") && !strings.Contains(f, "reset") && !strings.Contains(f, "refused") {
			t.Fatalf("capture failed across a reload with an answer: %s\n%s", f, grepLines(s.c.Logs(), `"level":"`))
		}
	}
	if len(failures)*50 > sent {
		t.Fatalf("%d of %d captures failed at the transport across reloads: %v", len(failures), sent, failures[:min(5, len(failures))])
	}
	if got := s.count(t); got != 2*n+2*acked {
		t.Fatalf("%d rows after %d acknowledged captures across reloads, want %d", got, acked, 2*n+2*acked)
	}
	t.Logf("%d captures across 3 reloads: %d acknowledged and stored, %d reset before any handler saw them", sent, acked, len(failures))

	// Case 54: shed github → 429 with Retry-After: 60, nothing stored.
	s.c.Reload(t, s.caddyfile(admin, "\t\tshed github"))
	// The reload returns once the old server's shutdown is scheduled
	// (caddyhttp's App.stop waits for its goroutine to start), not once
	// it has closed its listener: a capture that still reaches it is
	// answered by the old config, 202 with its rows. Send again, with a
	// new delivery id, until the new config answers.
	var resp *http.Response
	var before int
	for i := 1; i <= 10; i++ {
		before = s.count(t)
		resp, _ = s.post(t, "/extensions/github/webhook/", githubPush(fmt.Sprint("shed-", i)), []byte(`{"installation":{"id":555}}`))
		if resp.StatusCode != 202 {
			break
		}
	}
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "60" {
		t.Fatalf("shed: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if s.count(t) != before {
		t.Fatal("shed webhook stored")
	}
	// Other providers are not shed.
	if resp, _ := s.post(t, "/extensions/bitbucket/organizations/1/webhook/", nil, []byte(`{}`)); resp.StatusCode != 202 {
		t.Fatalf("bitbucket while github is shed: %d", resp.StatusCode)
	}
}

// Monolith mode: capture passes everything on.
func TestCaptureMonolith(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary; left out under -short")
	}
	admin, site := harness.ReservePort(t), harness.ReservePort(t)
	c := harness.Start(t, admin, fmt.Sprintf(`{
%s	sentry_silo {
		mode monolith
		region us http://127.0.0.1:1
	}
}
http://%s {
	route {
		sentry_webhook_capture
		respond "control" 200
	}
}
`, harness.GlobalOptions(admin), site.Addr))
	resp, err := captureClient.Post(site.URL()+"/extensions/github/webhook/", "application/json", strings.NewReader(`{"installation":{"id":555}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("monolith: %d\n%s", resp.StatusCode, c.Logs())
	}
}

// PostgreSQL storage: byte-exact rows, then the database goes away (503,
// never 202), then it comes back.
func TestCapturePostgresOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL; left out under -short")
	}
	cluster := pgtest.NewCluster(t, pgtest.Options{})
	s := newCaptureSetup(t, captureOptions{dsn: cluster.DSN(t)})

	raw := append([]byte(`{"installation":{"id":555},"x":"`), 0xff, 0x80, '"', '}')
	resp, body := s.post(t, "/extensions/github/webhook/?pg=1", githubPush("pg-1"), raw)
	if resp.StatusCode != 202 {
		t.Fatalf("capture: %d %q\n%s", resp.StatusCode, body, s.c.Logs())
	}
	rows := s.rows(t)
	if len(rows) != 2 || !bytes.Equal(rows[0].body, raw) || !bytes.Equal(rows[1].body, raw) || rows[0].path != "/extensions/github/webhook/?pg=1" {
		t.Fatalf("rows %+v", rows)
	}
	var headers map[string][]string
	if err := json.Unmarshal([]byte(rows[0].headers), &headers); err != nil || len(headers["X-Github-Delivery"]) == 0 {
		t.Logf("headers stored as %s", rows[0].headers)
	}
	s.db.Close()

	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, _ = s.post(t, "/extensions/github/webhook/", githubPush("pg-2"), []byte(`{"installation":{"id":555}}`))
	if resp.StatusCode != 503 {
		t.Fatalf("database down: %d, want 503", resp.StatusCode)
	}
	// The bound is the behaviour: a 503 at once, not a capture hung on
	// the dead server; 15s leaves seconds of margin for a loaded machine
	// over the store's own connect and commit timeouts.
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("503 took %s", d)
	}
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a 202 once the database is back", 30*time.Second, func() bool {
		resp, _ = s.post(t, "/extensions/github/webhook/", githubPush("pg-3"), []byte(`{"installation":{"id":555}}`))
		if resp.StatusCode != 202 && resp.StatusCode != 503 {
			t.Fatalf("after the database came back: %d\n%s", resp.StatusCode, s.c.Logs())
		}
		return resp.StatusCode == 202
	})
}
