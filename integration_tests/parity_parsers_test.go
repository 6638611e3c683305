package integration_tests

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jiraQSH is Atlassian Connect's query string hash of a request with no
// query: sha256 of "METHOD&path-without-trailing-slash&". Computed here
// from Atlassian's definition, not with the code under test.
func jiraQSH(method, path, canonicalQuery string) string {
	for len(path) > 1 && path[len(path)-1] == '/' {
		path = path[:len(path)-1]
	}
	sum := sha256.Sum256([]byte(method + "&" + path + "&" + canonicalQuery))
	return hex.EncodeToString(sum[:])
}

func jiraTokenFor(t *testing.T, iss, secret, qsh string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": iss, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(), "qsh": qsh,
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCaptureAnswersLikeSentrysNewestParsers: the answers that differed
// from Sentry's newest control silo, sent to the real binary as the
// providers send them (issue 14, point 5), and GitHub's check filters
// (point 2). Each case says what it stores, if anything, and where.
func TestCaptureAnswersLikeSentrysNewestParsers(t *testing.T) {
	s := newCaptureSetup(t, captureOptions{})
	issueUpdated := "/extensions/jira/issue-updated/"
	// A token Jira minted for the same webhook URL with a query.
	capturedElsewhere := jiraTokenFor(t, "jira-client-key", captureJiraSecret, jiraQSH("POST", issueUpdated, "user_id=1"))
	cases := []struct {
		name    string
		path    string
		header  http.Header
		body    string
		status  int
		rows    int
		control bool // answered by the control responder
	}{
		// GitHub: Sentry looks the installation up before it drops an
		// event no region processes.
		{"github star of an unknown installation", "/extensions/github/webhook/",
			hdrs("Content-Type", "application/json", "X-GitHub-Event", "star", "X-GitHub-Delivery", "p5-1"),
			`{"action":"created","starred_at":"2024-01-01T00:00:00Z","repository":{"id":4242},"installation":{"id":31337}}`, 400, 0, false},
		{"github ping without installation", "/extensions/github/webhook/",
			hdrs("Content-Type", "application/json", "X-GitHub-Event", "ping", "X-GitHub-Delivery", "p5-2"),
			`{"zen":"Keep it logically awesome.","hook_id":1,"hook":{"type":"App"}}`, 400, 0, false},
		{"github security_advisory without installation", "/extensions/github/webhook/",
			hdrs("Content-Type", "application/json", "X-GitHub-Event", "security_advisory", "X-GitHub-Delivery", "p5-3"),
			`{"action":"published","security_advisory":{"ghsa_id":"GHSA-xxxx"}}`, 400, 0, false},
		{"github star of a known installation is dropped", "/extensions/github/webhook/",
			hdrs("Content-Type", "application/json", "X-GitHub-Event", "star", "X-GitHub-Delivery", "p5-4"),
			`{"action":"created","installation":{"id":555}}`, 202, 0, false},
		// GitHub (point 2).
		{"github installation_repositories goes to control", "/extensions/github/webhook/",
			hdrs("Content-Type", "application/json", "X-GitHub-Event", "installation_repositories", "X-GitHub-Delivery", "p2-1"),
			`{"action":"added","installation":{"id":555},"repositories_added":[{"id":1}]}`, 200, 0, true},
		{"github check_run created is dropped", "/extensions/github/webhook/",
			hdrs("Content-Type", "application/json", "X-GitHub-Event", "check_run", "X-GitHub-Delivery", "p2-2"),
			`{"action":"created","check_run":{"id":1,"pull_requests":[]},"repository":{"id":4242},"installation":{"id":555}}`, 202, 0, false},
		{"github check_run completed is stored", "/extensions/github/webhook/",
			hdrs("Content-Type", "application/json", "X-GitHub-Event", "check_run", "X-GitHub-Delivery", "p2-3"),
			`{"action":"completed","check_run":{"id":1,"pull_requests":[]},"repository":{"id":4242},"installation":{"id":555}}`, 202, 2, false},
		{"github check_suite requested is dropped", "/extensions/github/webhook/",
			hdrs("Content-Type", "application/json", "X-GitHub-Event", "check_suite", "X-GitHub-Delivery", "p2-4"),
			`{"action":"requested","check_suite":{"id":1},"repository":{"id":4242},"installation":{"id":555}}`, 202, 0, false},
		{"github check_suite completed is stored", "/extensions/github/webhook/",
			hdrs("Content-Type", "application/json", "X-GitHub-Event", "check_suite", "X-GitHub-Delivery", "p2-5"),
			`{"action":"completed","check_suite":{"id":1,"pull_requests":[]},"repository":{"id":4242},"installation":{"id":555}}`, 202, 2, false},

		// MS Teams: a personal-chat command carries only the tenant.
		{"msteams unlink in a personal chat goes to control", "/extensions/msteams/webhook/", hdrs("Content-Type", "application/json"),
			`{"type":"message","text":"unlink","from":{"id":"29:1"},"conversation":{"conversationType":"personal","id":"a:1"},"channelData":{"tenant":{"id":"72f988bf"}},"serviceUrl":"https://smba.trafficmanager.net/amer/"}`,
			200, 0, true},
		{"msteams member added to a personal chat goes to control", "/extensions/msteams/webhook/", hdrs("Content-Type", "application/json"),
			`{"type":"conversationUpdate","membersAdded":[{"id":"28:bot"}],"conversation":{"conversationType":"personal","id":"a:2"},"channelData":{"tenant":{"id":"72f988bf"}}}`,
			200, 0, true},

		// Jira: the qsh claim binds the token to its request.
		{"jira token of this request", issueUpdated,
			hdrs("Authorization", "JWT "+jiraTokenFor(t, "jira-client-key", captureJiraSecret, jiraQSH("POST", issueUpdated, ""))), `{"issue":{}}`, 202, 1, false},
		{"jira token captured for another request", issueUpdated, hdrs("Authorization", "JWT "+capturedElsewhere), `{"issue":{}}`, 401, 0, false},
		{"jira token replayed with the other request's query", issueUpdated + "?user_id=1", hdrs("Authorization", "JWT "+capturedElsewhere), `{"issue":{}}`, 202, 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.count(t)
			resp, body := s.post(t, tc.path, tc.header, []byte(tc.body))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tc.status, body)
			}
			if got := string(body) == "control"; got != tc.control {
				t.Errorf("answered by control: %v, want %v (body %q)", got, tc.control, body)
			}
			if n := s.count(t) - before; n != tc.rows {
				t.Errorf("%d rows stored, want %d", n, tc.rows)
			}
		})
	}
}

// TestCaptureNewProvidersAndMailboxNames: Gitea, Cursor Origin and Slack's
// staging app through the real binary, the newest mailbox names, and
// github_drop_checks_without_own_repo_pr set in the Caddyfile.
func TestCaptureNewProvidersAndMailboxNames(t *testing.T) {
	const stagingSecret = "slack-staging-secret"
	s := newCaptureSetup(t, captureOptions{handler: "\t\tslack_staging_signing_secret " + stagingSecret + "\n\t\tgithub_drop_checks_without_own_repo_pr"})
	mustExec(t, s.db, `INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES
		(40, 'gitea', 'gitea.example.com:1', 'x', '{}', 0), (41, 'cursor_origin', 'i_01example', 'x', '{}', 0), (42, 'slack_staging', 'TSTAGE', 'x', '{}', 0)`)
	mustExec(t, s.db, `INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES
		(400, 1, 40, 0), (401, 2, 40, 0), (410, 1, 41, 0), (411, 2, 41, 0), (420, 2, 42, 0)`)
	now := func() string { return strconv.FormatInt(time.Now().Unix(), 10) }
	cursor := func(event, ts, sig string) http.Header {
		return hdrs("Content-Type", "application/json", "Webhook-Id", "whd_"+event+ts, "Webhook-Timestamp", ts,
			"Webhook-Signature", sig, "Webhook-Event-Type", event, "Webhook-Installation-Id", "i_01example")
	}
	stagingEvent := []byte(`{"type":"event_callback","team_id":"TSTAGE","event_id":"EvS"}`)
	stagingTS := now()
	cases := []struct {
		name      string
		path      string
		header    http.Header
		body      string
		status    int
		mailboxes []string // of the rows added, sorted
		control   bool
	}{
		{"gitea: the organization's region only", "/extensions/gitea/organizations/2/webhook/40/",
			hdrs("Content-Type", "application/json", "X-Gitea-Event", "push", "X-Gitea-Delivery", "gd-1"), `{"repository":{"id":4242}}`, 202, []string{"gitea:de:40"}, false},
		{"gitea: unknown organization goes to control", "/extensions/gitea/organizations/999/webhook/40/",
			hdrs("Content-Type", "application/json"), `{}`, 200, nil, true},
		{"gitea: unknown integration", "/extensions/gitea/organizations/1/webhook/404/",
			hdrs("Content-Type", "application/json"), `{}`, 400, nil, false},
		{"cursor origin push in both regions", "/extensions/cursor-origin/webhook/", cursor("repository.pushed", now(), "v1ed,c2ln"),
			`{"event":{"payload":{"repository":{"id":"r_01example"}}}}`, 202, []string{"cursor_origin:de:41", "cursor_origin:us:41"}, false},
		{"cursor origin unsigned", "/extensions/cursor-origin/webhook/", cursor("repository.pushed", now(), "sha256=x"), `{}`, 401, nil, false},
		{"cursor origin stale", "/extensions/cursor-origin/webhook/", cursor("repository.pushed", strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10), "v1ed,c2ln"), `{}`, 401, nil, false},
		{"cursor origin installation goes to control", "/extensions/cursor-origin/webhook/", cursor("installation.deleted", now(), ""), `{}`, 200, nil, true},
		{"cursor origin unknown event dropped", "/extensions/cursor-origin/webhook/", cursor("repository.made_up", now(), ""), `{}`, 202, nil, false},
		{"slack staging event", "/extensions/slack-staging/event/",
			hdrs("Content-Type", "application/json", "X-Slack-Request-Timestamp", stagingTS, "X-Slack-Signature", signSlack(stagingSecret, stagingTS, stagingEvent)),
			string(stagingEvent), 202, []string{"slack_staging:de:42"}, false},
		{"slack staging signed with the production secret", "/extensions/slack-staging/event/",
			hdrs("Content-Type", "application/json", "X-Slack-Request-Timestamp", stagingTS, "X-Slack-Signature", signSlack(captureSlackSecret, stagingTS, stagingEvent)),
			string(stagingEvent), 401, nil, false},
		// Newest names: GitHub by repository and event type always;
		// GitLab with its object_kind.
		{"github pull_request", "/extensions/github/webhook/", hdrs("Content-Type", "application/json", "X-GitHub-Event", "pull_request", "X-GitHub-Delivery", "n-1"),
			`{"action":"opened","installation":{"id":555},"repository":{"id":35129377}}`, 202, []string{"github:de:10:77:pull_request", "github:us:10:77:pull_request"}, false},
		{"github issues without repository", "/extensions/github/webhook/", hdrs("Content-Type", "application/json", "X-GitHub-Event", "issues", "X-GitHub-Delivery", "n-2"),
			`{"action":"opened","installation":{"id":555}}`, 202, []string{"github:de:10:issues", "github:us:10:issues"}, false},
		{"gitlab merge request", "/extensions/gitlab/webhook/", hdrs("Content-Type", "application/json", "X-Gitlab-Token", "gitlab.example.com:grp:s", "X-Gitlab-Event", "Merge Request Hook"),
			`{"object_kind":"merge_request","project":{"id":4217}}`, 202, []string{"gitlab:us:12:merge_request"}, false},
		{"gitlab object_kind not on the list", "/extensions/gitlab/webhook/", hdrs("Content-Type", "application/json", "X-Gitlab-Token", "gitlab.example.com:grp:s"),
			`{"object_kind":"made:up","project":{"id":4217}}`, 202, []string{"gitlab:us:12"}, false},
		// The option, set in the Caddyfile.
		{"check_run of a fork's pull request is dropped", "/extensions/github/webhook/", hdrs("Content-Type", "application/json", "X-GitHub-Event", "check_run", "X-GitHub-Delivery", "o-1"),
			`{"action":"completed","check_run":{"pull_requests":[{"base":{"repo":{"id":1}}}]},"repository":{"id":4242},"installation":{"id":555}}`, 202, nil, false},
		{"check_run of an own pull request is stored", "/extensions/github/webhook/", hdrs("Content-Type", "application/json", "X-GitHub-Event", "check_run", "X-GitHub-Delivery", "o-2"),
			`{"action":"completed","check_run":{"pull_requests":[{"base":{"repo":{"id":4242}}}]},"repository":{"id":4242},"installation":{"id":555}}`, 202, []string{"github:de:10:42:check_run", "github:us:10:42:check_run"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.rows(t))
			resp, body := s.post(t, tc.path, tc.header, []byte(tc.body))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %q)\n%s", resp.StatusCode, tc.status, body, relTail(s.c.Logs(), 10))
			}
			if got := string(body) == "control"; got != tc.control {
				t.Errorf("answered by control: %v, want %v", got, tc.control)
			}
			var got []string
			for _, r := range s.rows(t)[before:] {
				got = append(got, r.mailbox)
			}
			sort.Strings(got)
			if !slices.Equal(got, tc.mailboxes) {
				t.Errorf("stored in %v, want %v", got, tc.mailboxes)
			}
		})
	}
}
