package webhooks

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

type hdr = map[string]string

func mkReq(method, target string, h hdr, body string) *Request {
	u, err := url.Parse(target)
	if err != nil {
		panic(err)
	}
	header := http.Header{}
	for k, v := range h {
		header.Set(k, v)
	}
	return &Request{Method: method, Path: u.Path, RawQuery: u.RawQuery, Header: header, Body: []byte(body)}
}

func github(event, body string) *Request {
	h := hdr{"Content-Type": "application/json", "X-GitHub-Delivery": "d-1"}
	if event != "" {
		h["X-GitHub-Event"] = event
	}
	return mkReq("POST", "/extensions/github/webhook/", h, body)
}

func slackSigned(path, contentType, body string, at time.Time) *Request {
	ts := strconv.FormatInt(at.Unix(), 10)
	return mkReq("POST", path, hdr{
		"Content-Type":              contentType,
		"X-Slack-Request-Timestamp": ts,
		"X-Slack-Signature":         SignSlack(slackSecret, ts, []byte(body)),
	}, body)
}

func slackForm(path string, v url.Values) *Request {
	return slackSigned(path, "application/x-www-form-urlencoded", v.Encode(), testNow)
}

func discordSigned(body string) *Request {
	ts := "1700000000"
	sig := ed25519.Sign(discordPrivate, []byte(ts+body))
	return mkReq("POST", "/extensions/discord/interactions/", hdr{
		"Content-Type":          "application/json",
		"X-Signature-Ed25519":   hex.EncodeToString(sig),
		"X-Signature-Timestamp": ts,
	}, body)
}

// jiraJWT is a Connect JWT for POST /extensions/jira/issue-updated/ with no
// query but jwt.
func jiraJWT(iss, secret string) string { return jiraJWTFor(iss, secret, qshIssueUpdated) }

func jiraServerToken(id any, secret string) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"id": id}).SignedString([]byte(secret))
	if err != nil {
		panic(err)
	}
	return s
}

// want describes the expected Result; zero fields are not checked except
// Action and Status.
type want struct {
	action      Action
	status      int
	regions     []string
	subject     string
	integration int64
	provider    string
	delivery    string
	bucket      int64 // -1: no bucket key
	callback    string
	body        string
}

func TestParsers(t *testing.T) {
	ctx := context.Background()
	slackAction := func(payload string) url.Values { return url.Values{"payload": {payload}} }
	cases := []struct {
		name string
		req  *Request
		want want
	}{
		// GitHub (§7 cases 37-40).
		{"github push captured in both regions", github("push", `{"installation":{"id":555},"repository":{"id":4242}}`),
			want{action: Capture, status: 202, regions: []string{"de", "us"}, subject: "10", integration: 10, provider: "github", delivery: "d-1", bucket: 4242}},
		{"github installation goes to control", github("installation", `{"installation":{"id":555}}`), want{action: PassOn}},
		{"github star acknowledged and dropped", github("star", `{"installation":{"id":555}}`), want{action: Respond, status: 202}},
		{"github unknown installation", github("push", `{"installation":{"id":1}}`), want{action: Respond, status: 400}},
		{"github disabled integration", github("push", `{"installation":{"id":999}}`), want{action: Respond, status: 400}},
		{"github integration without organizations", github("push", `{"installation":{"id":556}}`), want{action: Respond, status: 400}},
		{"github body not JSON", github("push", `installation=555`), want{action: Respond, status: 400}},
		{"github no installation", github("push", `{}`), want{action: Respond, status: 400}},
		{"github wrong content type", mkReq("POST", "/extensions/github/webhook/", hdr{"Content-Type": "application/x-www-form-urlencoded", "X-GitHub-Event": "push"}, `{"installation":{"id":555}}`),
			want{action: Respond, status: 400}},
		{"github missing event still captured", github("", `{"installation":{"id":"555"}}`),
			want{action: Capture, status: 202, regions: []string{"de", "us"}, subject: "10", integration: 10, bucket: -1}},
		{"github other view is control", mkReq("GET", "/extensions/github/installation/123/", nil, ""), want{action: PassOn}},

		// GitHub Enterprise.
		{"github enterprise host", mkReq("POST", "/extensions/github-enterprise/webhook/", hdr{"Content-Type": "application/json", "X-GitHub-Event": "pull_request", "X-GitHub-Enterprise-Host": "ghe.example.com"}, `{"installation":{"id":77}}`),
			want{action: Capture, status: 202, regions: []string{"us"}, subject: "11", integration: 11, provider: "github_enterprise", bucket: -1}},
		{"github enterprise without host", mkReq("POST", "/extensions/github-enterprise/webhook/", hdr{"Content-Type": "application/json", "X-GitHub-Event": "push"}, `{"installation":{"id":77}}`),
			want{action: Respond, status: 400}},
		{"github enterprise wrong host", mkReq("POST", "/extensions/github-enterprise/webhook/", hdr{"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Enterprise-Host": "10.0.0.1"}, `{"installation":{"id":77}}`),
			want{action: Respond, status: 400}},

		// GitLab (case 41).
		{"gitlab token", mkReq("POST", "/extensions/gitlab/webhook/", hdr{"X-Gitlab-Token": "gitlab.example.com:grp:s3cret", "X-Gitlab-Event-UUID": "u-1"}, `{"project":{"id":9}}`),
			want{action: Capture, status: 202, regions: []string{"us"}, subject: "12", integration: 12, provider: "gitlab", delivery: "u-1", bucket: 9}},
		{"gitlab without token", mkReq("POST", "/extensions/gitlab/webhook/", nil, `{}`), want{action: Respond, status: 400}},
		{"gitlab malformed token", mkReq("POST", "/extensions/gitlab/webhook/", hdr{"X-Gitlab-Token": "s3cret"}, `{}`), want{action: Respond, status: 400}},
		{"gitlab unknown group", mkReq("POST", "/extensions/gitlab/webhook/", hdr{"X-Gitlab-Token": "gitlab.example.com:other:s"}, `{}`), want{action: Respond, status: 400}},
		{"gitlab not JSON", mkReq("POST", "/extensions/gitlab/webhook/", hdr{"X-Gitlab-Token": "gitlab.example.com:grp:s"}, `nope`), want{action: Respond, status: 400}},

		// Slack (cases 43-45).
		{"slack url_verification at the edge", slackSigned("/extensions/slack/event/", "application/json", `{"type":"url_verification","challenge":"x"}`, testNow),
			want{action: Respond, status: 200, body: `{"challenge":"x"}`}},
		{"slack challenge with a bad signature", mkReq("POST", "/extensions/slack/event/", hdr{"X-Slack-Request-Timestamp": "1700000000", "X-Slack-Signature": "v0=00"}, `{"type":"url_verification","challenge":"x"}`),
			want{action: Respond, status: 401}},
		{"slack stale timestamp", slackSigned("/extensions/slack/event/", "application/json", `{"type":"url_verification","challenge":"x"}`, testNow.Add(-6*time.Minute)),
			want{action: Respond, status: 401}},
		{"slack event captured for the first region", slackSigned("/extensions/slack/event/", "application/json", `{"type":"event_callback","team_id":"T123","event_id":"Ev1"}`, testNow),
			want{action: Capture, status: 202, regions: []string{"de"}, subject: "13", integration: 13, provider: "slack", delivery: "Ev1", bucket: -1}},
		{"slack event of an unlinked workspace", slackSigned("/extensions/slack/event/", "application/json", `{"type":"event_callback","team_id":"TGONE","event_id":"Ev2"}`, testNow),
			want{action: Respond, status: 202}},
		{"slack event of an unknown workspace", slackSigned("/extensions/slack/event/", "application/json", `{"type":"event_callback","team_id":"TNOPE"}`, testNow),
			want{action: Respond, status: 400}},
		{"slack command with response_url is a callback", slackForm("/extensions/slack/commands/", url.Values{"team_id": {"T123"}, "response_url": {"https://hooks.slack.com/commands/T/1/abc"}, "command": {"/sentry"}}),
			want{action: Callback, status: 200, regions: []string{"de"}, subject: "13", integration: 13, callback: "https://hooks.slack.com/commands/T/1/abc"}},
		// Any response_url makes a callback job: the drainer, not the
		// edge, decides whether it may be POSTed to (and never calls the
		// region for one it refuses), so the edge's answer tells nothing.
		{"slack command with a loopback response_url is still a callback", slackForm("/extensions/slack/commands/", url.Values{"team_id": {"T123"}, "response_url": {"http://127.0.0.1:9/x"}}),
			want{action: Callback, status: 200, regions: []string{"de"}, subject: "13", integration: 13, callback: "http://127.0.0.1:9/x"}},
		{"slack action with a response_url that is no URL is still a callback", slackForm("/extensions/slack/action/", slackAction(`{"type":"block_actions","team":{"id":"T123"},"response_url":"%zz","actions":[{"action_id":"resolve"}]}`)),
			want{action: Callback, status: 200, regions: []string{"de"}, subject: "13", integration: 13, callback: "%zz"}},
		{"slack action without response_url goes to all regions", slackForm("/extensions/slack/action/", slackAction(`{"type":"block_actions","team":{"id":"T123"},"actions":[{"action_id":"resolve"}]}`)),
			want{action: ProxyAll, regions: []string{"de", "us"}}},
		{"slack unfurl action goes to the first region", slackForm("/extensions/slack/action/", slackAction(`{"type":"block_actions","team":{"id":"T123"},"actions":[{"action_id":"link_clicked"}]}`)),
			want{action: ProxyFirst, regions: []string{"de", "us"}}},
		{"slack options-load", slackForm("/extensions/slack/options-load/", slackAction(`{"type":"block_suggestion","team":{"id":"T123"}}`)),
			want{action: ProxyFirst, regions: []string{"de", "us"}}},
		{"slack link-identity is control", mkReq("GET", "/extensions/slack/link-identity/abc/", nil, ""), want{action: PassOn}},

		// Discord (cases 46-47).
		{"discord ping answered at the edge", discordSigned(`{"type":1}`), want{action: Respond, status: 200, body: `{"type":1}`}},
		{"discord bad signature", mkReq("POST", "/extensions/discord/interactions/", hdr{"X-Signature-Ed25519": hex.EncodeToString(make([]byte, 64)), "X-Signature-Timestamp": "1"}, `{"type":1}`),
			want{action: Respond, status: 401}},
		{"discord command deferred", discordSigned(`{"type":2,"guild_id":"G1","application_id":"app1","token":"tok1"}`),
			want{action: Callback, status: 200, regions: []string{"us"}, subject: "15", integration: 15, callback: "https://discord.com/api/v10/webhooks/app1/tok1", body: `{"type":5,"data":{"flags":64}}`}},
		{"discord unknown guild", discordSigned(`{"type":2,"guild_id":"G9","application_id":"a","token":"t"}`), want{action: Respond, status: 400}},
		{"discord autocomplete to the first region", discordSigned(`{"type":4,"guild_id":"G1"}`), want{action: ProxyFirst, regions: []string{"us"}}},
		{"discord configure is control", mkReq("GET", "/extensions/discord/configure/", nil, ""), want{action: PassOn}},

		// Jira (case 48).
		{"jira issue-updated", mkReq("POST", "/extensions/jira/issue-updated/", hdr{"Authorization": "JWT " + jiraJWT("jira-client-key", "jsecret"), "X-Atlassian-Webhook-Identifier": "w-1"}, `{"issue":{}}`),
			want{action: Capture, status: 202, regions: []string{"us"}, subject: "16", integration: 16, provider: "jira", delivery: "w-1", bucket: -1}},
		{"jira jwt in the query", mkReq("POST", "/extensions/jira/issue-updated/?jwt="+jiraJWT("jira-client-key", "jsecret"), nil, `{}`),
			want{action: Capture, status: 202, regions: []string{"us"}, subject: "16"}},
		{"jira forged jwt", mkReq("POST", "/extensions/jira/issue-updated/", hdr{"Authorization": "JWT " + jiraJWT("jira-client-key", "wrong")}, `{}`), want{action: Respond, status: 401}},
		{"jira unknown client key", mkReq("POST", "/extensions/jira/issue-updated/", hdr{"Authorization": "JWT " + jiraJWT("who", "jsecret")}, `{}`), want{action: Respond, status: 404}},
		{"jira without jwt", mkReq("POST", "/extensions/jira/issue-updated/", nil, `{}`), want{action: Respond, status: 404}},
		{"jira in two regions", mkReq("POST", "/extensions/jira/issue-updated/", hdr{"Authorization": "JWT " + jiraJWT("jira-two", "jsecret")}, `{}`), want{action: Respond, status: 500}},
		{"jira installed is control", mkReq("POST", "/extensions/jira/installed/", nil, `{}`), want{action: PassOn}},
		{"jira uninstalled is control", mkReq("POST", "/extensions/jira/uninstalled/", nil, `{}`), want{action: PassOn}},

		// Jira Server (case 49).
		{"jira server issue-updated", mkReq("POST", "/extensions/jira-server/issue-updated/"+jiraServerToken(18, "jssecret")+"/", nil, `{"changelog":{"items":[]},"issue":{"id":"10042"}}`),
			want{action: Capture, status: 202, regions: []string{"us"}, subject: "18", integration: 18, provider: "jira_server", bucket: 10042}},
		{"jira server without changelog", mkReq("POST", "/extensions/jira-server/issue-updated/"+jiraServerToken(18, "jssecret")+"/", nil, `{"issue":{"id":"1"}}`), want{action: Respond, status: 200}},
		{"jira server invalid token", mkReq("POST", "/extensions/jira-server/issue-updated/not-a-token/", nil, `{"changelog":{}}`), want{action: Respond, status: 200}},
		{"jira server forged token", mkReq("POST", "/extensions/jira-server/issue-updated/"+jiraServerToken("18", "guess")+"/", nil, `{"changelog":{}}`), want{action: Respond, status: 200}},

		// MS Teams (case 50).
		{"msteams install is control", mkReq("POST", "/extensions/msteams/webhook/", nil, `{"type":"installationUpdate","action":"add"}`), want{action: PassOn}},
		{"msteams card action", mkReq("POST", "/extensions/msteams/webhook/", nil, `{"type":"message","value":{"payload":{"integrationId":19}}}`),
			want{action: Capture, status: 202, regions: []string{"de"}, subject: "19", integration: 19, provider: "msteams", bucket: -1}},
		{"msteams team message", mkReq("POST", "/extensions/msteams/webhook/", nil, `{"type":"message","channelData":{"team":{"id":"team-1"}}}`),
			want{action: Capture, status: 202, regions: []string{"de"}, subject: "19"}},
		{"msteams unknown team", mkReq("POST", "/extensions/msteams/webhook/", nil, `{"type":"message","channelData":{"team":{"id":"team-9"}}}`), want{action: Respond, status: 400}},
		{"msteams without type", mkReq("POST", "/extensions/msteams/webhook/", nil, `{"channelData":{"team":{"id":"team-1"}}}`), want{action: PassOn}},

		// Gitea, Cursor Origin and Slack's staging app (parity_test.go
		// has their rules).
		{"gitea push", giteaHook("1", "23", `{"repository":{"id":4242}}`),
			want{action: Capture, status: 202, regions: []string{"us"}, subject: "23", integration: 23, provider: "gitea", delivery: "g-1", bucket: 4242}},
		{"cursor origin push", cursorOrigin("repository.pushed", "i_01example", testNow, `{"event":{"payload":{"repository":{"id":"r_01example"}}}}`),
			want{action: Capture, status: 202, regions: []string{"de", "us"}, subject: "24", integration: 24, provider: "cursor_origin", delivery: "whd_01example"}},
		{"slack staging event", slackStagingSigned("/extensions/slack-staging/event/", "application/json", `{"type":"event_callback","team_id":"TSTAGE","event_id":"Ev9"}`, testNow),
			want{action: Capture, status: 202, regions: []string{"de"}, subject: "25", integration: 25, provider: "slack_staging", delivery: "Ev9", bucket: -1}},

		// VSTS.
		{"vsts work item", mkReq("POST", "/extensions/vsts/issue-updated/", nil, `{"id":"n-1","resourceContainers":{"collection":{"id":"coll-1"}}}`),
			want{action: Capture, status: 202, regions: []string{"us"}, subject: "20", integration: 20, provider: "vsts", delivery: "n-1", bucket: -1}},
		{"vsts unknown collection", mkReq("POST", "/extensions/vsts/issue-updated/", nil, `{"resourceContainers":{"collection":{"id":"x"}}}`), want{action: Respond, status: 400}},

		// Bitbucket (case 51) and Bitbucket Server.
		{"bitbucket org 2", mkReq("POST", "/extensions/bitbucket/organizations/2/webhook/", hdr{"X-Request-UUID": "r-1"}, `{}`),
			want{action: Capture, status: 202, regions: []string{"de"}, subject: "2", integration: 0, provider: "bitbucket", delivery: "r-1", bucket: -1}},
		{"bitbucket unknown org passes on", mkReq("POST", "/extensions/bitbucket/organizations/999/webhook/", nil, `{}`), want{action: PassOn}},
		{"bitbucket org in an unknown region passes on", mkReq("POST", "/extensions/bitbucket/organizations/3/webhook/", nil, `{}`), want{action: PassOn}},
		{"bitbucket server", mkReq("POST", "/extensions/bitbucket-server/organizations/1/webhook/7/", nil, `{}`),
			want{action: Capture, status: 202, regions: []string{"us"}, subject: "1", provider: "bitbucket_server", bucket: -1}},
		{"bitbucket server unknown org", mkReq("POST", "/extensions/bitbucket-server/organizations/42/webhook/7/", nil, `{}`), want{action: PassOn}},

		// Legacy plugins (case 52).
		{"plugin github webhook", mkReq("POST", "/plugins/github/organizations/1/webhook/", hdr{"X-GitHub-Delivery": "g-1"}, `{}`),
			want{action: Capture, status: 202, regions: []string{"us"}, subject: "1", provider: "plugins", delivery: "g-1", bucket: -1}},
		{"plugin unknown org", mkReq("POST", "/plugins/github/organizations/999/webhook/", nil, `{}`), want{action: Respond, status: 400}},
		{"plugin other path", mkReq("GET", "/plugins/github/other/", nil, ""), want{action: PassOn}},

		// Reading JSON bodies: ids as numbers or strings, null and
		// other types as absent; bodies that are not one valid JSON
		// object get each parser's usual refusal.
		{"github string ids", github("push", `{"installation":{"id":"555"},"repository":{"id":"4242"}}`),
			want{action: Capture, status: 202, subject: "10", bucket: 4242}},
		{"github null installation id", github("push", `{"installation":{"id":null},"repository":{"id":4242}}`), want{action: Respond, status: 400}},
		{"github object installation id", github("push", `{"installation":{"id":{"id":555}}}`), want{action: Respond, status: 400}},
		{"github boolean installation id", github("push", `{"installation":{"id":true}}`), want{action: Respond, status: 400}},
		{"github null repository id", github("push", `{"installation":{"id":555},"repository":{"id":null}}`),
			want{action: Capture, status: 202, subject: "10", bucket: -1}},
		{"github object repository id", github("push", `{"installation":{"id":555},"repository":{"id":{"id":4242}}}`),
			want{action: Capture, status: 202, subject: "10", bucket: -1}},
		{"github fractional repository id", github("push", `{"installation":{"id":555},"repository":{"id":4242.5}}`),
			want{action: Capture, status: 202, subject: "10", bucket: -1}},
		{"github body an array", github("push", `[{"installation":{"id":555}}]`), want{action: Respond, status: 400}},
		{"github body a string", github("push", `"{\"installation\":{\"id\":555}}"`), want{action: Respond, status: 400}},
		{"github body truncated", github("push", `{"installation":{"id":555},"repository":{"id":42`), want{action: Respond, status: 400}},
		{"github body with trailing data", github("push", `{"installation":{"id":555}}{}`), want{action: Respond, status: 400}},
		{"github body in Unicode white space", github("push", "\u00a0\f {\"installation\":{\"id\":555}}\v\n"),
			want{action: Capture, status: 202, subject: "10"}},
		{"github body nested too deep", github("push", `{"installation":{"id":555},"x":`+strings.Repeat("[", 10000)+strings.Repeat("]", 10000)+`}`),
			want{action: Respond, status: 400}},
		{"github Installation cased otherwise is absent", github("push", `{"Installation":{"id":555}}`), want{action: Respond, status: 400}},
		{"github installation not an object", github("star", `{"installation":"555"}`), want{action: Respond, status: 400}},
		{"gitlab string project id", mkReq("POST", "/extensions/gitlab/webhook/", hdr{"X-Gitlab-Token": "gitlab.example.com:grp:s"}, `{"project":{"id":"9"}}`),
			want{action: Capture, status: 202, subject: "12", bucket: 9}},
		{"gitlab object project id", mkReq("POST", "/extensions/gitlab/webhook/", hdr{"X-Gitlab-Token": "gitlab.example.com:grp:s"}, `{"project":{"id":{}}}`),
			want{action: Capture, status: 202, subject: "12", bucket: -1}},
		{"gitlab body an array", mkReq("POST", "/extensions/gitlab/webhook/", hdr{"X-Gitlab-Token": "gitlab.example.com:grp:s"}, `[]`), want{action: Respond, status: 400}},
		{"vsts number collection id", mkReq("POST", "/extensions/vsts/issue-updated/", nil, `{"resourceContainers":{"collection":{"id":1}}}`), want{action: Respond, status: 400}},
		{"vsts body a string", mkReq("POST", "/extensions/vsts/issue-updated/", nil, `"coll-1"`), want{action: Respond, status: 400}},
		{"vsts ResourceContainers cased otherwise is absent", mkReq("POST", "/extensions/vsts/issue-updated/", nil, `{"ResourceContainers":{"collection":{"id":"coll-1"}}}`),
			want{action: Respond, status: 400}},
		{"jira server body an array", mkReq("POST", "/extensions/jira-server/issue-updated/"+jiraServerToken(18, "jssecret")+"/", nil, `[{"changelog":{}}]`), want{action: Respond, status: 200}},
		{"jira server body truncated", mkReq("POST", "/extensions/jira-server/issue-updated/"+jiraServerToken(18, "jssecret")+"/", nil, `{"changelog":{}`), want{action: Respond, status: 200}},
		{"jira server null changelog", mkReq("POST", "/extensions/jira-server/issue-updated/"+jiraServerToken(18, "jssecret")+"/", nil, `{"changelog":null}`), want{action: Respond, status: 200}},
		{"jira server Changelog cased otherwise is absent", mkReq("POST", "/extensions/jira-server/issue-updated/"+jiraServerToken(18, "jssecret")+"/", nil, `{"Changelog":{}}`),
			want{action: Respond, status: 200}},
		{"jira server number issue id", mkReq("POST", "/extensions/jira-server/issue-updated/"+jiraServerToken(18, "jssecret")+"/", nil, `{"changelog":{},"issue":{"id":5001}}`),
			want{action: Capture, status: 202, subject: "18", bucket: 5001}},
		{"msteams string integration id", mkReq("POST", "/extensions/msteams/webhook/", nil, `{"type":"message","value":{"payload":{"integrationId":"19"}}}`),
			want{action: Capture, status: 202, subject: "19"}},
		{"msteams null integration id falls back to the team", mkReq("POST", "/extensions/msteams/webhook/", nil, `{"type":"message","value":{"payload":{"integrationId":null}},"channelData":{"team":{"id":"team-1"}}}`),
			want{action: Capture, status: 202, subject: "19"}},
		{"msteams body an array", mkReq("POST", "/extensions/msteams/webhook/", nil, `[{"type":"message"}]`), want{action: PassOn}},
		{"msteams body truncated", mkReq("POST", "/extensions/msteams/webhook/", nil, `{"type":"message","channelData":{"team":{"id":"team-1"}}`), want{action: PassOn}},
		{"msteams team not an object", mkReq("POST", "/extensions/msteams/webhook/", nil, `{"type":"message","channelData":{"team":"team-1"}}`), want{action: PassOn}},
		{"discord body an array", discordSigned(`[{"type":1}]`), want{action: Respond, status: 400}},
		{"discord fractional type", discordSigned(`{"type":1.5}`), want{action: Respond, status: 400}},
		{"discord Type cased otherwise is absent", discordSigned(`{"Type":1}`), want{action: Respond, status: 400}},
		{"slack event body a string", slackSigned("/extensions/slack/event/", "application/json", `"x"`, testNow), want{action: Respond, status: 400}},
		{"slack event body truncated", slackSigned("/extensions/slack/event/", "application/json", `{"type":"event_callback","team_id":"T123"`, testNow),
			want{action: Respond, status: 400}},
		{"slack action payload an array", slackForm("/extensions/slack/action/", slackAction(`[{"team":{"id":"T123"}}]`)), want{action: Respond, status: 400}},
		{"slack actions not an array", slackForm("/extensions/slack/action/", slackAction(`{"team":{"id":"T123"},"actions":{"action_id":"link_clicked"}}`)),
			want{action: Respond, status: 400}},

		// A repeated member name counts as its last occurrence, at every
		// level, as Python's json.loads and Django's QueryDict in the
		// region read it: the edge must route the webhook where the
		// region will look for its integration.
		{"github repeated installation", github("push", `{"installation":{"id":1},"repository":{"id":4242},"installation":{"id":555}}`),
			want{action: Capture, status: 202, regions: []string{"de", "us"}, subject: "10", integration: 10, bucket: 4242}},
		{"github repeated installation id", github("push", `{"installation":{"id":555,"id":1}}`), want{action: Respond, status: 400}},
		{"github repeated installation, the last without an id", github("push", `{"installation":{"id":555},"installation":{}}`), want{action: Respond, status: 400}},
		{"github repeated installation, the last null", github("push", `{"installation":{"id":555},"installation":null}`), want{action: Respond, status: 400}},
		{"github repeated installation, the first not an object", github("push", `{"installation":"x","installation":{"id":555}}`),
			want{action: Capture, status: 202, subject: "10"}},
		{"github repeated installation, escaped name", github("push", `{"installation":{"id":1},"install\u0061tion":{"id":555}}`),
			want{action: Capture, status: 202, subject: "10"}},
		{"github repeated repository id", github("push", `{"installation":{"id":555},"repository":{"id":1,"owner":{"id":7},"id":4242}}`),
			want{action: Capture, status: 202, subject: "10", bucket: 4242}},
		{"github enterprise repeated installation", mkReq("POST", "/extensions/github-enterprise/webhook/", hdr{"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Enterprise-Host": "ghe.example.com"}, `{"installation":{"id":1},"installation":{"id":77}}`),
			want{action: Capture, status: 202, subject: "11", integration: 11}},
		{"gitlab repeated project", mkReq("POST", "/extensions/gitlab/webhook/", hdr{"X-Gitlab-Token": "gitlab.example.com:grp:s"}, `{"project":{"id":9},"project":{"id":10}}`),
			want{action: Capture, status: 202, subject: "12", bucket: 10}},
		{"slack repeated team_id", slackSigned("/extensions/slack/event/", "application/json", `{"type":"event_callback","team_id":"TNOPE","event_id":"Ev1","team_id":"T123"}`, testNow),
			want{action: Capture, status: 202, regions: []string{"de"}, subject: "13", delivery: "Ev1"}},
		{"slack repeated type", slackSigned("/extensions/slack/event/", "application/json", `{"type":"event_callback","challenge":"x","type":"url_verification"}`, testNow),
			want{action: Respond, status: 200, body: `{"challenge":"x"}`}},
		{"slack repeated team object", slackForm("/extensions/slack/action/", slackAction(`{"type":"block_actions","team":{"id":"TNOPE"},"team":{"id":"T123"},"actions":[{"action_id":"resolve"}]}`)),
			want{action: ProxyAll, regions: []string{"de", "us"}}},
		{"slack repeated team id", slackForm("/extensions/slack/action/", slackAction(`{"type":"block_actions","team":{"id":"TNOPE","id":"T123"},"actions":[{"action_id":"resolve"}]}`)),
			want{action: ProxyAll, regions: []string{"de", "us"}}},
		{"slack repeated action_id", slackForm("/extensions/slack/action/", slackAction(`{"type":"block_actions","team":{"id":"T123"},"actions":[{"action_id":"link_clicked","action_id":"resolve"}]}`)),
			want{action: ProxyAll, regions: []string{"de", "us"}}},
		{"slack repeated actions", slackForm("/extensions/slack/action/", slackAction(`{"type":"block_actions","team":{"id":"T123"},"actions":[{"action_id":"resolve"}],"actions":[{"action_id":"link_clicked"}]}`)),
			want{action: ProxyFirst, regions: []string{"de", "us"}}},
		{"slack repeated form team_id", slackSigned("/extensions/slack/commands/", "application/x-www-form-urlencoded", "team_id=TNOPE&response_url=https%3A%2F%2Fhooks.slack.com%2Fc%2F1&team_id=T123", testNow),
			want{action: Callback, status: 200, regions: []string{"de"}, subject: "13", callback: "https://hooks.slack.com/c/1"}},
		{"slack repeated form response_url", slackSigned("/extensions/slack/commands/", "application/x-www-form-urlencoded", "team_id=T123&response_url=https%3A%2F%2Fa.example%2F1&response_url=https%3A%2F%2Fhooks.slack.com%2Fc%2F2", testNow),
			want{action: Callback, status: 200, callback: "https://hooks.slack.com/c/2"}},
		{"slack repeated form payload", slackSigned("/extensions/slack/action/", "application/x-www-form-urlencoded",
			url.Values{"payload": {`{"team":{"id":"TNOPE"}}`, `{"type":"block_actions","team":{"id":"T123"},"actions":[{"action_id":"link_clicked"}]}`}}.Encode(), testNow),
			want{action: ProxyFirst, regions: []string{"de", "us"}}},
		{"discord repeated guild_id", discordSigned(`{"type":2,"guild_id":"G9","application_id":"app1","token":"tok1","guild_id":"G1"}`),
			want{action: Callback, status: 200, regions: []string{"us"}, subject: "15", callback: "https://discord.com/api/v10/webhooks/app1/tok1"}},
		{"discord repeated type", discordSigned(`{"type":2,"type":1}`), want{action: Respond, status: 200, body: `{"type":1}`}},
		{"jira repeated jwt parameter", mkReq("POST", "/extensions/jira/issue-updated/?jwt="+jiraJWT("who", "jsecret")+"&jwt="+jiraJWT("jira-client-key", "jsecret"), nil, `{}`),
			want{action: Capture, status: 202, subject: "16"}},
		{"jira server repeated issue", mkReq("POST", "/extensions/jira-server/issue-updated/"+jiraServerToken(18, "jssecret")+"/", nil, `{"changelog":{},"issue":{"id":1},"issue":{"id":"10042"}}`),
			want{action: Capture, status: 202, subject: "18", bucket: 10042}},
		{"jira server repeated changelog, the last null", mkReq("POST", "/extensions/jira-server/issue-updated/"+jiraServerToken(18, "jssecret")+"/", nil, `{"changelog":{},"issue":{"id":1},"changelog":null}`),
			want{action: Respond, status: 200}},
		{"msteams repeated integrationId", mkReq("POST", "/extensions/msteams/webhook/", nil, `{"type":"message","value":{"payload":{"integrationId":99}},"value":{"payload":{"integrationId":19}}}`),
			want{action: Capture, status: 202, regions: []string{"de"}, subject: "19"}},
		{"msteams repeated team", mkReq("POST", "/extensions/msteams/webhook/", nil, `{"type":"message","channelData":{"team":{"id":"team-9"},"team":{"id":"team-1"}}}`),
			want{action: Capture, status: 202, subject: "19"}},
		{"msteams repeated type", mkReq("POST", "/extensions/msteams/webhook/", nil, `{"type":"message","channelData":{"team":{"id":"team-1"}},"type":"installationUpdate"}`),
			want{action: PassOn}},
		{"vsts repeated collection", mkReq("POST", "/extensions/vsts/issue-updated/", nil, `{"resourceContainers":{"collection":{"id":"x"},"collection":{"id":"coll-1"}}}`),
			want{action: Capture, status: 202, subject: "20"}},
		{"vsts repeated notification id", mkReq("POST", "/extensions/vsts/issue-updated/", nil, `{"id":"n-1","resourceContainers":{"collection":{"id":"coll-1"}},"id":"n-2"}`),
			want{action: Capture, status: 202, subject: "20", delivery: "n-2"}},

		// Control fall-throughs (case 53).
		{"vercel", mkReq("POST", "/extensions/vercel/webhook/", nil, `{}`), want{action: PassOn}},
		{"google", mkReq("POST", "/extensions/google/x/", nil, `{}`), want{action: PassOn}},
		{"slack setup", mkReq("GET", "/extensions/slack/setup/", nil, ""), want{action: PassOn}},
		{"github link", mkReq("GET", "/extensions/github/link/", nil, ""), want{action: PassOn}},
		{"unknown provider", mkReq("POST", "/extensions/nope/webhook/", nil, `{}`), want{action: PassOn}},
		{"not a webhook path", mkReq("GET", "/api/0/organizations/", nil, ""), want{action: PassOn}},
	}
	env := testEnv(newFakeDir())
	stored := map[string]bool{} // providers seen storing a payload
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			provider, res, err := Parse(ctx, env, tc.req)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkResult(t, provider, res, tc.want)
			if res.Action == Capture || res.Action == Callback {
				stored[res.Provider] = true
				// shed <provider> <integration_id> relies on this.
				if (res.IntegrationID == 0) != ByOrganization(res.Provider) {
					t.Errorf("%s payload with integration id %d, but ByOrganization(%[1]q) = %v", res.Provider, res.IntegrationID, ByOrganization(res.Provider))
				}
			}
		})
	}
	// Providers is what shed and skip_on_failure accept: every name in
	// it must store payloads under that name, and no other name does.
	if got, want := Providers(), sortedKeys(stored); !reflect.DeepEqual(got, want) {
		t.Errorf("Providers() = %v; the providers whose payloads these cases store are %v", got, want)
	}
	for p := range controlOnly {
		if CheckStored(p) == nil {
			t.Errorf("control-only %s accepted as a stored provider", p)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func checkResult(t *testing.T, provider string, res Result, w want) {
	t.Helper()
	if res.Action != w.action {
		t.Fatalf("action = %v, want %v (result %+v)", res.Action, w.action, res)
	}
	if w.status != 0 && res.Status != w.status {
		t.Errorf("status = %d, want %d", res.Status, w.status)
	}
	checkReason(t, res)
	if w.regions != nil && !reflect.DeepEqual(res.Regions, w.regions) {
		t.Errorf("regions = %v, want %v", res.Regions, w.regions)
	}
	if w.subject != "" && res.Subject != w.subject {
		t.Errorf("subject = %q, want %q", res.Subject, w.subject)
	}
	if w.integration != 0 && res.IntegrationID != w.integration {
		t.Errorf("integration = %d, want %d", res.IntegrationID, w.integration)
	}
	if w.provider != "" && res.Provider != w.provider {
		t.Errorf("provider = %q, want %q (routed as %q)", res.Provider, w.provider, provider)
	}
	if w.delivery != "" && res.DeliveryKey != w.delivery {
		t.Errorf("delivery key = %q, want %q", res.DeliveryKey, w.delivery)
	}
	if w.bucket > 0 && (!res.HasBucket || res.BucketKey != w.bucket) {
		t.Errorf("bucket = %v/%d, want %d", res.HasBucket, res.BucketKey, w.bucket)
	}
	if w.bucket < 0 && res.HasBucket {
		t.Errorf("unexpected bucket key %d", res.BucketKey)
	}
	if w.callback != "" && res.CallbackURL != w.callback {
		t.Errorf("callback = %q, want %q", res.CallbackURL, w.callback)
	}
	if w.body != "" && string(res.Body) != w.body {
		t.Errorf("body = %s, want %s", res.Body, w.body)
	}
}

// checkReason holds every refusal to a reason from the bounded set, and
// every other answer to none: an empty 400 the operator cannot explain is
// the defect the reason exists for.
func checkReason(t *testing.T, res Result) {
	t.Helper()
	known := map[string]bool{ReasonBadSignature: true, ReasonBadBody: true, ReasonNoRoutingKey: true,
		ReasonUnknownIntegration: true, ReasonNoRegion: true, ReasonUnknownOrganization: true, ReasonSeveralRegions: true}
	refused := res.Action == Respond && res.Status >= 400
	switch {
	case refused && !known[res.Reason]:
		t.Errorf("status %d answered with reason %q, want one of the Reason constants", res.Status, res.Reason)
	case !refused && res.Reason != "":
		t.Errorf("status %d (action %v) carries reason %q", res.Status, res.Action, res.Reason)
	}
}

func TestDirectoryFailureIsAnError(t *testing.T) {
	dir := newFakeDir()
	dir.err = errDown
	env := testEnv(dir)
	for _, req := range []*Request{
		github("push", `{"installation":{"id":555}}`),
		mkReq("POST", "/extensions/bitbucket/organizations/2/webhook/", nil, `{}`),
		mkReq("POST", "/extensions/jira-server/issue-updated/"+jiraServerToken(18, "jssecret")+"/", nil, `{"changelog":{}}`),
		mkReq("POST", "/extensions/jira/issue-updated/", hdr{"Authorization": "JWT " + jiraJWT("jira-client-key", "jsecret")}, `{}`),
	} {
		if _, _, err := Parse(context.Background(), env, req); err == nil {
			t.Errorf("%s: want an error when the directory is down", req.Path)
		}
	}
}

func TestGitHubEdgeSignature(t *testing.T) {
	env := testEnv(newFakeDir())
	env.GitHubWebhookSecret = githubSecret
	body := `{"installation":{"id":555}}`
	good := github("push", body)
	good.Header.Set("X-Hub-Signature-256", SignGitHub(githubSecret, []byte(body)))
	if _, res, _ := Parse(context.Background(), env, good); res.Action != Capture {
		t.Fatalf("signed: %+v", res)
	}
	bad := github("push", body)
	bad.Header.Set("X-Hub-Signature-256", SignGitHub([]byte("other"), []byte(body)))
	if _, res, _ := Parse(context.Background(), env, bad); res.Status != 401 {
		t.Fatalf("forged: %+v", res)
	}
	missing := github("push", body)
	if _, res, _ := Parse(context.Background(), env, missing); res.Status != 401 {
		t.Fatalf("unsigned: %+v", res)
	}
}

func TestDiscordPingWithoutKeyGoesToControl(t *testing.T) {
	env := testEnv(newFakeDir())
	env.DiscordPublicKey = nil
	_, res, _ := Parse(context.Background(), env, mkReq("POST", "/extensions/discord/interactions/", nil, `{"type":1}`))
	if res.Action != PassOn {
		t.Fatalf("got %+v", res)
	}
}

func TestSlackWithoutSecretIsNotVerified(t *testing.T) {
	env := testEnv(newFakeDir())
	env.SlackSigningSecret = nil
	_, res, _ := Parse(context.Background(), env, mkReq("POST", "/extensions/slack/event/", nil, `{"type":"url_verification","challenge":"c"}`))
	if res.Status != 200 || string(res.Body) != `{"challenge":"c"}` {
		t.Fatalf("got %+v", res)
	}
}

func TestCallbackBody(t *testing.T) {
	got, err := CallbackBody("discord", []byte(`{"type":4,"data":{"content":"hi"}}`))
	if err != nil || string(got) != `{"content":"hi"}` {
		t.Fatalf("discord: %s %v", got, err)
	}
	got, err = CallbackBody("slack", []byte(`{"text":"ok"}`))
	if err != nil || string(got) != `{"text":"ok"}` {
		t.Fatalf("slack: %s %v", got, err)
	}
	if _, err := CallbackBody("discord", []byte(`{"type":4}`)); err == nil {
		t.Fatal("discord without data: want error")
	}
	if _, err := CallbackBody("github", nil); err == nil {
		t.Fatal("github: want error")
	}
}

func TestRegistryCoversEveryProvider(t *testing.T) {
	for _, p := range []string{"slack", "discord", "github", "github_enterprise", "gitlab", "jira", "jira_server", "msteams", "vsts", "bitbucket", "bitbucket_server", "plugins"} {
		if registry[p] == nil {
			t.Errorf("no parser for %s", p)
		}
	}
	for _, p := range []string{"vercel", "google"} {
		if !controlOnly[p] {
			t.Errorf("%s is not control-only", p)
		}
	}
}

func TestCheckStored(t *testing.T) {
	all := strings.Join(Providers(), ", ")
	for _, tc := range []struct{ name, want string }{
		{"github", ""},
		{"plugins", ""},
		{"vercel", "vercel webhooks are served by the control silo and never stored; the providers whose webhooks are stored are " + all},
		{"google", "google webhooks are served by the control silo"},
		{"githb", `unknown provider "githb"; the providers whose webhooks are stored are ` + all},
		{"github-enterprise", `unknown provider "github-enterprise"`},
		{"", `unknown provider ""`},
	} {
		err := CheckStored(tc.name)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckStored(%q) = %v, want %q", tc.name, err, tc.want)
		}
	}
}
