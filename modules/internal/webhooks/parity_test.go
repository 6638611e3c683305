package webhooks

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The rules of Sentry's newest control silo parsers, one table per
// provider, a success and a refusal for each rule (issue 14).

type parityCase struct {
	name string
	req  *Request
	want want
}

func runParity(t *testing.T, env *Env, cases []parityCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			provider, res, err := Parse(context.Background(), env, tc.req)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkResult(t, provider, res, tc.want)
		})
	}
}

func ghEvent(event, body string) *Request { return github(event, body) }

// GitHub: the events of control (installation, installation_repositories)
// pass on; the rest are looked up before any is dropped, so an event no
// region processes still gets 400 for a missing or unknown installation,
// as Sentry answers; check_run and check_suite are forwarded only for
// the actions a region consumes.
func TestGitHubParity(t *testing.T) {
	checkRun := func(action string) *Request {
		return ghEvent("check_run", `{"action":`+action+`,"installation":{"id":555},"repository":{"id":123}}`)
	}
	checkSuite := func(action string) *Request {
		return ghEvent("check_suite", `{"action":`+action+`,"installation":{"id":555},"repository":{"id":123}}`)
	}
	captured := want{action: Capture, status: 202, subject: "10", integration: 10, provider: "github"}
	dropped := want{action: Respond, status: 202}
	runParity(t, testEnv(newFakeDir()), []parityCase{
		// Control's events.
		{"installation goes to control", ghEvent("installation", `{"installation":{"id":555}}`), want{action: PassOn}},
		{"installation_repositories goes to control", ghEvent("installation_repositories", `{"installation":{"id":555},"repositories_added":[]}`), want{action: PassOn}},
		{"installation_repositories of an unknown installation goes to control", ghEvent("installation_repositories", `{"installation":{"id":1}}`), want{action: PassOn}},
		{"installation with a form content type goes to control", mkReq("POST", "/extensions/github/webhook/", hdr{"Content-Type": "application/x-www-form-urlencoded", "X-GitHub-Event": "installation"}, `{"installation":{"id":555}}`),
			want{action: PassOn}},
		{"push is not control's", ghEvent("push", `{"installation":{"id":555}}`), captured},

		// The lookup comes before the drop.
		{"star of a known installation is dropped", ghEvent("star", `{"installation":{"id":555}}`), dropped},
		{"star of an unknown installation", ghEvent("star", `{"installation":{"id":1}}`), want{action: Respond, status: 400}},
		{"star without installation", ghEvent("star", `{"action":"created"}`), want{action: Respond, status: 400}},
		{"ping of a known installation is dropped", ghEvent("ping", `{"zen":"x","installation":{"id":555}}`), dropped},
		{"ping without installation", ghEvent("ping", `{"zen":"x","hook_id":1}`), want{action: Respond, status: 400}},
		{"security_advisory without installation", ghEvent("security_advisory", `{"action":"published"}`), want{action: Respond, status: 400}},
		{"security_advisory of an installation without organizations", ghEvent("security_advisory", `{"installation":{"id":556}}`), want{action: Respond, status: 400}},
		{"status of a disabled integration", ghEvent("status", `{"installation":{"id":999}}`), want{action: Respond, status: 400}},
		{"a missing X-GitHub-Event is forwarded", ghEvent("", `{"installation":{"id":555}}`), captured},
		{"an empty X-GitHub-Event is forwarded like a missing one", mkReq("POST", "/extensions/github/webhook/", hdr{"Content-Type": "application/json", "X-GitHub-Event": ""}, `{"installation":{"id":555}}`), captured},

		// check_run: completed, requested_action, rerequested.
		{"check_run completed", checkRun(`"completed"`), captured},
		{"check_run requested_action", checkRun(`"requested_action"`), captured},
		{"check_run rerequested", checkRun(`"rerequested"`), captured},
		{"check_run created is dropped", checkRun(`"created"`), dropped},
		{"check_run of an unknown action is dropped", checkRun(`"attacker-controlled-junk"`), dropped},
		{"check_run without action is dropped", ghEvent("check_run", `{"installation":{"id":555}}`), dropped},
		{"check_run with an object action is dropped", checkRun(`{"nested":"junk"}`), dropped},
		{"check_run with a null action is dropped", checkRun(`null`), dropped},
		{"check_run created of an unknown installation", ghEvent("check_run", `{"action":"created","installation":{"id":1}}`), want{action: Respond, status: 400}},
		// check_suite: completed only.
		{"check_suite completed", checkSuite(`"completed"`), captured},
		{"check_suite requested is dropped", checkSuite(`"requested"`), dropped},
		{"check_suite rerequested is dropped", checkSuite(`"rerequested"`), dropped},
		{"check_suite of an unknown action is dropped", checkSuite(`"x"`), dropped},
		// Events regions process now that the reference's list lacked.
		{"pull_request_review_thread", ghEvent("pull_request_review_thread", `{"action":"resolved","installation":{"id":555}}`), captured},
	})
}

// MS Teams: an activity with only a tenant id (a personal-chat bot
// command such as unlink, a member added to a personal chat) cannot name
// its integration on its own and goes to control, where identity linking
// lives.
func TestMSTeamsParity(t *testing.T) {
	teams := func(body string) *Request { return mkReq("POST", "/extensions/msteams/webhook/", nil, body) }
	runParity(t, testEnv(newFakeDir()), []parityCase{
		{"tenant only: unlink command goes to control", teams(`{"type":"message","text":"unlink","conversation":{"conversationType":"personal"},"channelData":{"tenant":{"id":"tenant-9"}}}`),
			want{action: PassOn}},
		{"tenant only: member added to a personal chat goes to control", teams(`{"type":"conversationUpdate","membersAdded":[{"id":"29:1"}],"channelData":{"tenant":{"id":"tenant-9"}}}`),
			want{action: PassOn}},
		{"tenant only, with an integration of that tenant, goes to control", teams(`{"type":"message","channelData":{"tenant":{"id":"tenant-1"}}}`),
			want{action: PassOn}},
		{"team and tenant: the team's integration", teams(`{"type":"message","channelData":{"team":{"id":"team-1"},"tenant":{"id":"tenant-9"}}}`),
			want{action: Capture, status: 202, regions: []string{"de"}, subject: "19", integration: 19}},
		{"card action: its integration", teams(`{"type":"message","value":{"payload":{"integrationId":19}},"channelData":{"tenant":{"id":"tenant-9"}}}`),
			want{action: Capture, status: 202, subject: "19"}},
		{"card action of an unknown integration falls back to the team", teams(`{"type":"message","value":{"payload":{"integrationId":404}},"channelData":{"team":{"id":"team-1"}}}`),
			want{action: Capture, status: 202, subject: "19"}},
		{"card action of an unknown integration falls back to the tenant", teams(`{"type":"message","value":{"payload":{"integrationId":404}},"channelData":{"tenant":{"id":"tenant-1"}}}`),
			want{action: Capture, status: 202, subject: "26", integration: 26}},
		{"card action of an unknown integration, nothing else", teams(`{"type":"message","value":{"payload":{"integrationId":404}},"channelData":{"tenant":{"id":"tenant-9"}}}`),
			want{action: Respond, status: 400}},
		{"unknown team", teams(`{"type":"message","channelData":{"team":{"id":"team-9"},"tenant":{"id":"tenant-1"}}}`),
			want{action: Capture, status: 202, subject: "26"}},
	})
}

// jiraJWTFor is a Connect JWT for one request: its qsh is the query
// string hash of method, path and query (qshOf, computed independently
// in the test table below).
func jiraJWTFor(iss, secret, qsh string) string {
	claims := jwt.MapClaims{"iss": iss, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	if qsh != "" {
		claims["qsh"] = qsh
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		panic(err)
	}
	return s
}

// Query string hashes, computed with Python's hashlib and urllib.parse.quote
// (safe="~" less "/"), following Atlassian's definition, not with the code
// under test:
//
//	sha256("POST&/extensions/jira/issue-updated&")
//	sha256("POST&/extensions/jira/issue-updated&a=1&b=x%20y%2Fz")
//	sha256("GET&/extensions/jira/issue-updated&")
//	sha256("POST&/extensions/jira/issue-updated&tag=a%2Cb,c")
const (
	qshIssueUpdated      = "3f3a9ce11273657e8a715d95ddc04fc69e5a70b5c94513f9ca94917f74384f44"
	qshIssueUpdatedQuery = "558fd6b098137254382c03de01224a0c3068d86b1aefb6e7099423ee6b0b6db8"
	qshIssueUpdatedGET   = "58ff07c00b9f9fbf76148f9ede49ddf72ecb809ada0e8ccee31e2d3c87bb1715"
	qshRepeated          = "0e6bb3ba9b93953b577b028b9be70397a35a9ce756ef847e5b95f834ddcfc5c8"
)

// Jira (Atlassian Connect): the JWT's qsh claim must be the hash of this
// request's method, path and sorted query, so a token captured for one
// request is refused for another.
func TestJiraParity(t *testing.T) {
	path := "/extensions/jira/issue-updated/"
	auth := func(qsh string) hdr {
		return hdr{"Authorization": "JWT " + jiraJWTFor("jira-client-key", "jsecret", qsh)}
	}
	captured := want{action: Capture, status: 202, subject: "16", integration: 16, provider: "jira"}
	refused := want{action: Respond, status: http.StatusUnauthorized}
	runParity(t, testEnv(newFakeDir()), []parityCase{
		{"qsh of this request", mkReq("POST", path, auth(qshIssueUpdated), `{}`), captured},
		{"qsh of this request, trailing slash and all", mkReq("POST", "/extensions/jira/issue-updated", auth(qshIssueUpdated), `{}`), captured},
		{"qsh of this request's sorted, encoded query", mkReq("POST", path+"?b=x+y%2Fz&a=1", auth(qshIssueUpdatedQuery), `{}`), captured},
		{"the jwt parameter is not part of the hash", mkReq("POST", path+"?a=1&b=x%20y/z&jwt="+jiraJWTFor("jira-client-key", "jsecret", qshIssueUpdatedQuery), nil, `{}`), captured},
		{"repeated parameters: sorted values joined by commas", mkReq("POST", path+"?tag=c&tag=a,b", auth(qshRepeated), `{}`), captured},
		{"a token captured for another method", mkReq("POST", path, auth(qshIssueUpdatedGET), `{}`), refused},
		{"a token captured for another query", mkReq("POST", path+"?a=2&b=x%20y/z", auth(qshIssueUpdatedQuery), `{}`), refused},
		{"a token captured without the query", mkReq("POST", path+"?a=1", auth(qshIssueUpdated), `{}`), refused},
		{"a token with no qsh", mkReq("POST", path, auth(""), `{}`), refused},
		{"a token with a made-up qsh", mkReq("POST", path, auth("x"), `{}`), refused},
	})
}

func giteaHook(org, integration, body string) *Request {
	return mkReq("POST", "/extensions/gitea/organizations/"+org+"/webhook/"+integration+"/",
		hdr{"Content-Type": "application/json", "X-Gitea-Event": "push", "X-Gitea-Delivery": "g-1"}, body)
}

// Gitea: the organization in the hook URL picks the region, the
// integration in it the mailbox.
func TestGiteaParity(t *testing.T) {
	captured := want{action: Capture, status: 202, regions: []string{"us"}, subject: "23", integration: 23, provider: "gitea", delivery: "g-1"}
	runParity(t, testEnv(newFakeDir()), []parityCase{
		// The organization's region, and that one only.
		{"organization 1: its region only", giteaHook("1", "23", `{"repository":{"id":4242}}`),
			want{action: Capture, status: 202, regions: []string{"us"}, subject: "23", integration: 23, bucket: 4242}},
		{"organization 2: its region only", giteaHook("2", "23", `{}`),
			want{action: Capture, status: 202, regions: []string{"de"}, subject: "23", integration: 23, bucket: -1}},
		{"an organization with no mapping goes to control", giteaHook("999", "23", `{}`), want{action: PassOn}},
		{"an organization in an unknown region goes to control", giteaHook("3", "23", `{}`), want{action: PassOn}},
		{"an organization id that is not a number goes to control", giteaHook("acme", "23", `{}`), want{action: PassOn}},
		// The integration of the URL.
		{"unknown integration", giteaHook("1", "404", `{}`), want{action: Respond, status: 400}},
		{"integration of another provider", giteaHook("1", "10", `{}`), want{action: Respond, status: 400}},
		{"disabled integration", giteaHook("1", "27", `{}`), want{action: Respond, status: 400}},
		{"integration id that is not a number", giteaHook("1", "x23", `{}`), want{action: Respond, status: 400}},
		{"not JSON by its content type", mkReq("POST", "/extensions/gitea/organizations/1/webhook/23/", hdr{"Content-Type": "text/plain"}, `{}`), want{action: Respond, status: 400}},
		// Bucket by repository id.
		{"repository id as a string", giteaHook("1", "23", `{"repository":{"id":"4242"}}`), want{action: Capture, status: 202, subject: "23", bucket: 4242}},
		{"no repository: no bucket key", giteaHook("1", "23", `{"ref":"refs/heads/main"}`), want{action: Capture, status: 202, subject: "23", bucket: -1}},
		{"a body that is not JSON is still stored", giteaHook("1", "23", `not json`), captured},
		{"repository not an object: no bucket key", giteaHook("1", "23", `{"repository":"r"}`), want{action: Capture, status: 202, subject: "23", bucket: -1}},
		// Other views.
		{"search view is control's", mkReq("GET", "/extensions/gitea/search/acme/23/", nil, ""), want{action: PassOn}},
		{"webhook without the integration is control's", mkReq("POST", "/extensions/gitea/organizations/1/webhook/", nil, `{}`), want{action: PassOn}},
	})
}

func cursorOrigin(event, installation string, at time.Time, body string) *Request {
	h := hdr{
		"Content-Type":      "application/json",
		"Webhook-Id":        "whd_01example",
		"Webhook-Timestamp": strconv.FormatInt(at.Unix(), 10),
		"Webhook-Signature": "v1ed,c2lnbmF0dXJl",
	}
	if event != "" {
		h["Webhook-Event-Type"] = event
	}
	if installation != "" {
		h["Webhook-Installation-Id"] = installation
	}
	return mkReq("POST", "/extensions/cursor-origin/webhook/", h, body)
}

// Cursor Origin: routed on webhook-event-type; control keeps installation
// events and pings; unsigned or stale deliveries are refused before
// anything is stored; the mailbox is split by a hash of the repository.
func TestCursorOriginParity(t *testing.T) {
	pushed := func(mutate func(*Request)) *Request {
		r := cursorOrigin("repository.pushed", "i_01example", testNow, `{"event":{"type":"repository.pushed","payload":{"repository":{"id":"r_01example"}}}}`)
		if mutate != nil {
			mutate(r)
		}
		return r
	}
	captured := want{action: Capture, status: 202, regions: []string{"de", "us"}, subject: "24", integration: 24, provider: "cursor_origin", delivery: "whd_01example",
		bucket: 1289043701} // FNV-1a 32 of "r_01example", computed with Python
	unauthorized := want{action: Respond, status: 401}
	runParity(t, testEnv(newFakeDir()), []parityCase{
		// Routing on the event type.
		{"repository.pushed", pushed(nil), captured},
		{"repository.metadata.updated", cursorOrigin("repository.metadata.updated", "i_01example", testNow, `{}`), want{action: Capture, status: 202, subject: "24", bucket: -1}},
		{"installation.updated goes to control", cursorOrigin("installation.updated", "i_01example", testNow, `{}`), want{action: PassOn}},
		{"installation.deleted goes to control, unsigned", mkReq("POST", "/extensions/cursor-origin/webhook/", hdr{"Webhook-Event-Type": "installation.deleted"}, `{}`), want{action: PassOn}},
		{"ping goes to control", cursorOrigin("ping", "", testNow, `{}`), want{action: PassOn}},
		{"no event type goes to control", cursorOrigin("", "i_01example", testNow, `{}`), want{action: PassOn}},
		{"an event no region handles is dropped", cursorOrigin("repository.check_run.created", "i_01example", testNow, `{}`), want{action: Respond, status: 202}},
		{"an unknown event is dropped, signed or not", mkReq("POST", "/extensions/cursor-origin/webhook/", hdr{"Webhook-Event-Type": "repository.made_up"}, `{}`), want{action: Respond, status: 202}},
		// Looking signed, before anything is stored.
		{"no signature", pushed(func(r *Request) { r.Header.Del("Webhook-Signature") }), unauthorized},
		{"a signature without Origin's prefix", pushed(func(r *Request) { r.Header.Set("Webhook-Signature", "sha256=deadbeef") }), unauthorized},
		{"Origin's signature among others", pushed(func(r *Request) { r.Header.Set("Webhook-Signature", "v1,abc v1ed,c2ln") }), captured},
		{"no webhook-id", pushed(func(r *Request) { r.Header.Del("Webhook-Id") }), unauthorized},
		{"no timestamp", pushed(func(r *Request) { r.Header.Del("Webhook-Timestamp") }), unauthorized},
		{"a timestamp that is not a number", pushed(func(r *Request) { r.Header.Set("Webhook-Timestamp", "yesterday") }), unauthorized},
		{"a stale timestamp (10 minutes)", pushed(func(r *Request) {
			r.Header.Set("Webhook-Timestamp", strconv.FormatInt(testNow.Add(-10*time.Minute).Unix(), 10))
		}), unauthorized},
		{"a timestamp from the future (6 minutes)", pushed(func(r *Request) {
			r.Header.Set("Webhook-Timestamp", strconv.FormatInt(testNow.Add(6*time.Minute).Unix(), 10))
		}), unauthorized},
		{"a timestamp 5 minutes old is fresh", pushed(func(r *Request) {
			r.Header.Set("Webhook-Timestamp", strconv.FormatInt(testNow.Add(-5*time.Minute).Unix(), 10))
		}), captured},
		// The integration of webhook-installation-id.
		{"unknown installation", pushed(func(r *Request) { r.Header.Set("Webhook-Installation-Id", "i_01nope") }), want{action: Respond, status: 400}},
		{"no installation", pushed(func(r *Request) { r.Header.Del("Webhook-Installation-Id") }), want{action: Respond, status: 400}},
		// The bucket key.
		{"numeric repository id", cursorOrigin("repository.pushed", "i_01example", testNow, `{"event":{"payload":{"repository":{"id":42}}}}`),
			want{action: Capture, status: 202, subject: "24", bucket: 2279835011}}, // FNV-1a 32 of "42"
		{"no repository: no bucket key", cursorOrigin("repository.pushed", "i_01example", testNow, `{"event":{"payload":{}}}`), want{action: Capture, status: 202, subject: "24", bucket: -1}},
		{"a body that is not JSON is still stored", cursorOrigin("repository.pushed", "i_01example", testNow, `nope`), want{action: Capture, status: 202, subject: "24", bucket: -1}},
		// Other paths.
		{"another path is control's", mkReq("GET", "/extensions/cursor-origin/setup-complete/", nil, ""), want{action: PassOn}},
	})
}

func slackStagingSigned(path, contentType, body string, at time.Time) *Request {
	ts := strconv.FormatInt(at.Unix(), 10)
	return mkReq("POST", path, hdr{
		"Content-Type":              contentType,
		"X-Slack-Request-Timestamp": ts,
		"X-Slack-Signature":         SignSlack(stagingSecret, ts, []byte(body)),
	}, body)
}

// Slack's staging app: Slack's parser under its own provider, integrations
// and signing secret.
func TestSlackStagingParity(t *testing.T) {
	event := `{"type":"event_callback","team_id":"TSTAGE","event_id":"Ev9"}`
	runParity(t, testEnv(newFakeDir()), []parityCase{
		{"event, in its provider's mailbox", slackStagingSigned("/extensions/slack-staging/event/", "application/json", event, testNow),
			want{action: Capture, status: 202, regions: []string{"de"}, subject: "25", integration: 25, provider: "slack_staging", delivery: "Ev9"}},
		{"the underscore spelling routes alike", slackStagingSigned("/extensions/slack_staging/event/", "application/json", event, testNow),
			want{action: Capture, status: 202, provider: "slack_staging", subject: "25"}},
		{"signed with the production app's secret", slackSigned("/extensions/slack-staging/event/", "application/json", event, testNow), want{action: Respond, status: 401}},
		{"a production workspace is not the staging app's", slackStagingSigned("/extensions/slack-staging/event/", "application/json", `{"type":"event_callback","team_id":"T123"}`, testNow),
			want{action: Respond, status: 400}},
		{"challenge at the edge", slackStagingSigned("/extensions/slack-staging/event/", "application/json", `{"type":"url_verification","challenge":"c"}`, testNow),
			want{action: Respond, status: 200, body: `{"challenge":"c"}`}},
		{"command with response_url is a callback", slackStagingSigned("/extensions/slack-staging/commands/", "application/x-www-form-urlencoded",
			url.Values{"team_id": {"TSTAGE"}, "response_url": {"https://hooks.slack.com/commands/T/1/x"}}.Encode(), testNow),
			want{action: Callback, status: 200, regions: []string{"de"}, subject: "25", callback: "https://hooks.slack.com/commands/T/1/x"}},
		{"link-identity is control's", mkReq("GET", "/extensions/slack-staging/link-identity/abc/", nil, ""), want{action: PassOn}},
	})
	if got := CallbackHosts("slack_staging"); len(got) == 0 || got[0] != "hooks.slack.com" {
		t.Errorf("CallbackHosts(slack_staging) = %v", got)
	}
	if body, err := CallbackBody("slack_staging", []byte(`{"text":"ok"}`)); err != nil || string(body) != `{"text":"ok"}` {
		t.Errorf("CallbackBody(slack_staging) = %s, %v", body, err)
	}
}

// GitHub, with the option on, drops a completed check none of whose pull
// requests is based in the delivery's own repository; off (the default),
// it stores them.
func TestGitHubOwnRepoPullRequestDrop(t *testing.T) {
	check := func(event, action, container string) *Request {
		body := `{"action":"` + action + `","installation":{"id":555},"repository":{"id":123}`
		if container != "" {
			body += `,"` + event + `":` + container
		}
		return ghEvent(event, body+`}`)
	}
	own := `{"pull_requests":[{"number":7,"base":{"repo":{"id":123}}}]}`
	foreign := `{"pull_requests":[{"number":7,"base":{"repo":{"id":456}}}]}`
	captured := want{action: Capture, status: 202, subject: "10"}
	dropped := want{action: Respond, status: 202}
	on := testEnv(newFakeDir())
	on.GitHubDropChecksWithoutOwnRepoPR = true
	for _, event := range []string{"check_run", "check_suite"} {
		t.Run(event, func(t *testing.T) {
			runParity(t, on, []parityCase{
				{"own repository's pull request", check(event, "completed", own), captured},
				{"own one after a foreign one", check(event, "completed", `{"pull_requests":[{"base":{"repo":{"id":456}}},{"base":{"repo":{"id":123}}}]}`), captured},
				{"own one with its id as a string", check(event, "completed", `{"pull_requests":[{"base":{"repo":{"id":"123"}}}]}`), captured},
				{"only a fork's pull request", check(event, "completed", foreign), dropped},
				{"no pull request", check(event, "completed", `{"pull_requests":[]}`), dropped},
				{"no pull_requests member", check(event, "completed", `{"id":1}`), dropped},
				{"no check object", check(event, "completed", ""), dropped},
				{"a pull request with no base repository", check(event, "completed", `{"pull_requests":[{"number":7}]}`), dropped},
				{"malformed entries", check(event, "completed", `{"pull_requests":["junk",{"base":"junk"},{"base":{"repo":[]}}]}`), dropped},
				{"pull_requests not a list", check(event, "completed", `{"pull_requests":{"base":{"repo":{"id":123}}}}`), dropped},
				{"check not an object", check(event, "completed", `"junk"`), dropped},
				{"the last pull_requests counts", check(event, "completed", `{"pull_requests":[{"base":{"repo":{"id":123}}}],"pull_requests":[]}`), dropped},
				{"no repository id", ghEvent(event, `{"action":"completed","installation":{"id":555},"`+event+`":`+own+`}`), dropped},
			})
		})
	}
	runParity(t, on, []parityCase{
		{"check_run rerequested is never dropped by it", check("check_run", "rerequested", `{"pull_requests":[]}`), captured},
		{"check_run requested_action is never dropped by it", check("check_run", "requested_action", foreign), captured},
		{"another event's pull requests do not count", check("check_run", "completed", "") /* no check_run */, dropped},
	})
	off := testEnv(newFakeDir())
	runParity(t, off, []parityCase{
		{"off: check_run of a fork's pull request is stored", check("check_run", "completed", foreign), captured},
		{"off: check_suite without pull requests is stored", check("check_suite", "completed", `{"pull_requests":[]}`), captured},
	})
}

// Mailbox keys as Sentry names them: GitHub always splits by repository
// id and event type; GitLab names the object_kind and splits by project
// past the threshold; an event type not on the provider's list names
// nothing.
func TestMailboxKeys(t *testing.T) {
	gitlab := func(body string) *Request {
		return mkReq("POST", "/extensions/gitlab/webhook/", hdr{"X-Gitlab-Token": "gitlab.example.com:grp:s", "Content-Type": "application/json"}, body)
	}
	cases := []struct {
		name      string
		req       *Request
		always    bool
		bucket    int64 // -1: none
		eventType string
	}{
		{"github push", ghEvent("push", `{"installation":{"id":555},"repository":{"id":35129377}}`), true, 35129377, "push"},
		{"github issues without repository", ghEvent("issues", `{"installation":{"id":555}}`), true, -1, "issues"},
		{"github check_suite", ghEvent("check_suite", `{"action":"completed","installation":{"id":555},"repository":{"id":123}}`), true, 123, "check_suite"},
		{"github without X-GitHub-Event", ghEvent("", `{"installation":{"id":555},"repository":{"id":123}}`), true, 123, ""},
		{"github enterprise pull_request", mkReq("POST", "/extensions/github-enterprise/webhook/", hdr{"Content-Type": "application/json", "X-GitHub-Event": "pull_request", "X-GitHub-Enterprise-Host": "ghe.example.com"}, `{"installation":{"id":77},"repository":{"id":5}}`),
			true, 5, "pull_request"},
		{"gitlab push", gitlab(`{"object_kind":"push","project":{"id":4217}}`), false, 4217, "push"},
		{"gitlab merge_request", gitlab(`{"object_kind":"merge_request","project":{"id":1}}`), false, 1, "merge_request"},
		{"gitlab object_kind not on the list", gitlab(`{"object_kind":"pipeline","project":{"id":1}}`), false, 1, ""},
		{"gitlab object_kind made up", gitlab(`{"object_kind":"x:y","project":{"id":1}}`), false, 1, ""},
		{"gitlab object_kind not a string", gitlab(`{"object_kind":7,"project":{"id":1}}`), false, 1, ""},
		{"gitlab without object_kind", gitlab(`{"project":{"id":1}}`), false, 1, ""},
		{"jira server: no event type", mkReq("POST", "/extensions/jira-server/issue-updated/"+jiraServerToken(18, "jssecret")+"/", nil, `{"changelog":{},"issue":{"id":5}}`), false, 5, ""},
		{"gitea: threshold only", giteaHook("1", "23", `{"repository":{"id":9}}`), false, 9, ""},
	}
	env := testEnv(newFakeDir())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, res, err := Parse(context.Background(), env, tc.req)
			if err != nil || res.Action != Capture {
				t.Fatalf("Parse: %+v, %v", res, err)
			}
			bucket := int64(-1)
			if res.HasBucket {
				bucket = res.BucketKey
			}
			if res.AlwaysBucket != tc.always || bucket != tc.bucket || res.EventType != tc.eventType {
				t.Errorf("always %v, bucket key %d, event type %q; want %v, %d, %q", res.AlwaysBucket, bucket, res.EventType, tc.always, tc.bucket, tc.eventType)
			}
		})
	}
	for _, tc := range []struct{ provider, event, want string }{
		{"github", "push", "push"}, {"github", "installation", ""}, {"github", "star", ""},
		{"github_enterprise", "check_run", "check_run"}, {"gitlab", "note", "note"}, {"gitlab", "Push Hook", ""},
		{"slack", "push", ""}, {"bitbucket", "repo:push", ""},
	} {
		if got := MailboxEventType(tc.provider, tc.event); got != tc.want {
			t.Errorf("MailboxEventType(%q, %q) = %q, want %q", tc.provider, tc.event, got, tc.want)
		}
	}
}
