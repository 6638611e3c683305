package webhooks

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
)

// fuzzPaths are the paths the fuzzer picks from, one or more per parser.
var fuzzPaths = []string{
	"/extensions/github/webhook/",
	"/extensions/github-enterprise/webhook/",
	"/extensions/gitlab/webhook/",
	"/extensions/slack/event/",
	"/extensions/slack/commands/",
	"/extensions/slack/action/",
	"/extensions/slack/options-load/",
	"/extensions/discord/interactions/",
	"/extensions/jira/issue-updated/",
	"/extensions/jira-server/issue-updated/",
	"/extensions/msteams/webhook/",
	"/extensions/vsts/issue-updated/",
	"/extensions/bitbucket/organizations/",
	"/extensions/bitbucket-server/organizations/",
	"/plugins/github/organizations/",
	"/extensions/vercel/",
	"/extensions/gitea/organizations/",
	"/extensions/cursor-origin/webhook/",
	"/extensions/slack-staging/event/",
	"/extensions/slack-staging/commands/",
}

// FuzzParsers feeds arbitrary bodies, path tails and header values to
// every parser. No input may panic, answer 5xx, or ask to store a payload
// without a region.
func FuzzParsers(f *testing.F) {
	seeds := []struct {
		path     uint8
		tail, h1 string
		h2, body string
	}{
		{0, "", "push", "", `{"installation":{"id":555},"repository":{"id":1}}`},
		{0, "", "installation", "", `{"installation":{"id":"555"}}`},
		{1, "", "push", "ghe.example.com", `{"installation":{"id":77}}`},
		{2, "", "gitlab.example.com:grp:s", "", `{"project":{"id":[1]}}`},
		{3, "", "", "", `{"type":"url_verification","challenge":"x"}`},
		{3, "", "", "", `{"type":"event_callback","team_id":"T123"}`},
		{4, "", "", "", "team_id=T123&response_url=https%3A%2F%2Fh"},
		{5, "", "", "", `payload=%7B%22team%22%3A%7B%22id%22%3A%22T123%22%7D%7D`},
		{7, "", "", "", `{"type":2,"guild_id":"G1","application_id":"a","token":"t"}`},
		{8, "", "JWT a.b.c", "", `{}`},
		{9, "eyJhbGciOiJIUzI1NiJ9.eyJpZCI6MTh9.x/", "", "", `{"changelog":{}}`},
		{10, "", "", "", `{"type":"message","value":{"payload":{"integrationId":"19"}}}`},
		{11, "", "", "", `{"resourceContainers":{"collection":{"id":"coll-1"}}}`},
		{12, "2/webhook/", "", "", ``},
		{13, "1/webhook/7/", "", "", ``},
		{14, "999/webhook/", "", "", "\xff\xfe"},
		{0, "", "check_run", "", `{"action":"completed","installation":{"id":555},"repository":{"id":1},"check_run":{"pull_requests":[{"base":{"repo":{"id":1}}}]}}`},
		{0, "", "check_suite", "", `{"action":"completed","installation":{"id":555},"repository":{"id":1},"check_suite":{"pull_requests":[{"base":"x"},1,null]}}`},
		{0, "", "installation_repositories", "", `{"installation":{"id":555}}`},
		{2, "", "gitlab.example.com:grp:s", "", `{"object_kind":"merge_request","project":{"id":7}}`},
		{10, "", "", "", `{"type":"message","channelData":{"tenant":{"id":"tenant-1"}}}`},
		{16, "1/webhook/23/", "application/json", "", `{"repository":{"id":9}}`},
		{16, "2/webhook/x/", "application/json", "", `{}`},
		{17, "", "repository.pushed", "i_01example", `{"event":{"payload":{"repository":{"id":"r_1"}}}}`},
		{17, "", "installation.deleted", "", `{}`},
		{18, "", "", "", `{"type":"event_callback","team_id":"TSTAGE"}`},
		{19, "", "", "", "team_id=TSTAGE&response_url=https%3A%2F%2Fh"},
		{3, "", "", "", `{"type":"event_callback","team_id":"T123","event":{"type":"app_mention","user":"UBOTH","channel":"C1","text":"https://acme.sentry.io/issues/1/"}}`},
		{3, "", "", "", `{"type":"event_callback","team_id":"T123","event":{"type":"assistant_thread_started","assistant_thread":{"user_id":"UX"}}}`},
		{5, "", "", "", `payload=%7B%22team%22%3A%7B%22id%22%3A%22T123%22%7D%2C%22trigger_id%22%3A%22t%22%2C%22response_url%22%3A%22https%3A%2F%2Fh%22%2C%22actions%22%3A%5B%7B%22value%22%3A%22resolve_dialog%22%2C%22action_ts%22%3A%221.2%22%7D%5D%7D`},
	}
	for _, s := range seeds {
		f.Add(s.path, s.tail, s.h1, s.h2, []byte(s.body))
	}
	env := testEnv(newFakeDir())
	env.SlackSigningSecret = nil // let bodies reach the parsers
	env.SlackStagingSigningSecret = nil
	env.DiscordPublicKey = nil
	env.GitHubDropChecksWithoutOwnRepoPR = true
	env.SlackLoadingModal = true
	env.SlackDedupeSeerEvents = true
	env.Identities = &fakeIdentities{links: map[string]int64{"slack|T123|UBOTH": 2}, members: map[int64][]int64{2: {1, 2}}}
	f.Fuzz(func(t *testing.T, path uint8, tail, h1, h2 string, body []byte) {
		p := fuzzPaths[int(path)%len(fuzzPaths)] + tail
		req := mkReq("POST", "/", nil, "")
		req.Path = p
		req.Body = body
		for _, k := range []string{"X-Github-Event", "X-Gitlab-Token", "Authorization", "Content-Type"} {
			req.Header.Set(k, h1)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Github-Enterprise-Host", h2)
		// Cursor Origin routes on its headers; the rest of a signed
		// delivery's are fixed, so deliveries reach the lookup.
		req.Header.Set("Webhook-Event-Type", h1)
		req.Header.Set("Webhook-Installation-Id", h2)
		req.Header.Set("Webhook-Id", "whd_1")
		req.Header.Set("Webhook-Timestamp", strconv.FormatInt(testNow.Unix(), 10))
		req.Header.Set("Webhook-Signature", "v1ed,c2ln")
		_, res, err := Parse(context.Background(), env, req)
		if err != nil {
			t.Fatalf("error from a healthy directory: %v", err)
		}
		if res.Status >= 500 {
			// A forged input cannot reach the one 5xx (a Jira
			// integration installed in two regions): its JWT must
			// verify first.
			t.Fatalf("5xx for %q: %+v", p, res)
		}
		if c := res.SlackCall; c != nil && (c.Integration.ID == 0 || !json.Valid(c.Body) ||
			(c.Method != "views.open" || res.Action != Callback) && (c.Method != "chat.postEphemeral" || res.SeerHalt == "")) {
			t.Fatalf("Slack call %s %s with %+v", c.Method, c.Body, res)
		}
		switch res.Action {
		case Capture, Callback, ProxyFirst, ProxyAll:
			if len(res.Regions) == 0 || res.Subject == "" || res.Provider == "" {
				t.Fatalf("payload without region/subject/provider: %+v", res)
			}
			// A mailbox name ends with an event type of the provider's
			// fixed list only, whatever the sender wrote.
			if res.EventType != "" && MailboxEventType(res.Provider, res.EventType) != res.EventType {
				t.Fatalf("event type %q is not on %s's list", res.EventType, res.Provider)
			}
			if res.AlwaysBucket && res.Provider != "github" && res.Provider != "github_enterprise" {
				t.Fatalf("%s mailbox always split", res.Provider)
			}
		}
	})
}
