package admin

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

func TestSensitiveHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"Authorization": true, "Proxy-Authorization": true, "Cookie": true, "Set-Cookie": true,
		"X-Hub-Signature": true, "X-Hub-Signature-256": true, "X-Slack-Signature": true,
		"X-Signature-Ed25519": true, "X-Signature-Timestamp": true, "X-Gitlab-Token": true, "X-Sentry-Auth": true,
		"X-Sentry-Subnet-Organization-Integration": true, "X-Sentry-Subnet-Base-Url": true, "Shared-Secret": true,
		"X-Vercel-Signature": true, "X-Api-Key": true, "X-Amz-Security-Token": true, "X-Session-Id": true,
		"Content-Type": false, "X-Github-Event": false, "X-Github-Delivery": false, "User-Agent": false,
		"X-Slack-Request-Timestamp": false, "X-Atlassian-Webhook-Identifier": false,
	} {
		if got := sensitiveHeader(name); got != want {
			t.Errorf("sensitiveHeader(%q) = %v, want %v", name, got, want)
		}
	}
	h := maskHeaders(http.Header{"Authorization": {"JWT a", "JWT b"}, "X-Github-Event": {"push"}})
	if fmt.Sprint(h["Authorization"]) != "[[masked] [masked]]" || fmt.Sprint(h["X-Github-Event"]) != "[push]" {
		t.Errorf("maskHeaders = %v", h)
	}
}

func TestMaskPath(t *testing.T) {
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJpZCI6N30.c2lnbmF0dXJl"
	for in, want := range map[string]string{
		"/extensions/jira-server/issue-updated/" + jwt + "/":   "/extensions/jira-server/issue-updated/[masked]/",
		"/extensions/jira-server/issue-updated/opaque-token":   "/extensions/jira-server/issue-updated/[masked]",
		"/extensions/jira/issue-updated/?jwt=" + jwt + "&x=1":  "/extensions/jira/issue-updated/?jwt=[masked]&x=1",
		"/extensions/vsts/issue-updated/?access_token=abc&a=b": "/extensions/vsts/issue-updated/?access_token=[masked]&a=b",
		"/a/?Api-Key=1&signature=2&user=3":                     "/a/?Api-Key=[masked]&signature=[masked]&user=3",
		"/plugins/github/organizations/1/webhook/":             "/plugins/github/organizations/1/webhook/",
		"/x/" + jwt + "/y":                "/x/[masked]/y",
		"/extensions/github/webhook/?n=3": "/extensions/github/webhook/?n=3",
	} {
		if got := maskPath(in); got != want {
			t.Errorf("maskPath(%q) = %q, want %q", in, got, want)
		}
	}
	if got := maskCallbackURL("https://hooks.slack.com/actions/T1/2/secret"); got != "https://hooks.slack.com/[masked]" {
		t.Errorf("maskCallbackURL = %q", got)
	}
}

func TestBodyView(t *testing.T) {
	slackPayload := url.QueryEscape(`{"type":"block_actions","token":"vtok","response_url":"https://hooks.slack.com/actions/T/1/x","user":{"id":"U1"}}`)
	long := strings.Repeat("a", PreviewBytes-1) + "é" + "tail"
	binary := []byte{0xff, 0xfe, 0x00, 0x01}
	for _, tc := range []struct {
		name, contentType string
		body              []byte
		encoding, preview string
		truncated, masked bool
	}{
		{"json", "application/json", []byte(`{"action":"opened"}`), "text", `{"action":"opened"}`, false, false},
		{"json with a token", "application/json", []byte(`{"token": "dtok", "x": "token"}`), "text", `{"token": "[masked]", "x": "token"}`, false, true},
		{"slack form", "application/x-www-form-urlencoded", []byte("token=vtok&team_id=T1&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2Fx&text=hi"),
			"text", "token=%5Bmasked%5D&team_id=T1&response_url=%5Bmasked%5D&text=hi", false, true},
		{"slack interactive form", "application/x-www-form-urlencoded; charset=utf-8", []byte("payload=" + slackPayload),
			"text", "payload=" + url.QueryEscape(`{"type":"block_actions","token":"[masked]","response_url":"[masked]","user":{"id":"U1"}}`), false, true},
		{"cut on a character", "text/plain", []byte(long), "text", strings.Repeat("a", PreviewBytes-1), true, false},
		{"binary", "application/octet-stream", binary, "base64", base64.StdEncoding.EncodeToString(binary), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := bodyView(tc.body, tc.contentType)
			if v.Size != len(tc.body) || v.Encoding != tc.encoding || v.Preview != tc.preview || v.Truncated != tc.truncated || v.Masked != tc.masked {
				t.Fatalf("bodyView = %+v\nwant encoding %s preview %q truncated %v masked %v", v, tc.encoding, tc.preview, tc.truncated, tc.masked)
			}
		})
	}
}

// No stored credential or signature appears in any answer of the API:
// every listing and every row opened, pending, dead and delivered.
func TestAPINoSecretInAnswers(t *testing.T) {
	const (
		jwt       = "eyJhbGciOiJIUzI1NiJ9.eyJpZCI6N30.SECRETjiraServerSig"
		connect   = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJrIn0.SECRETconnectSig"
		hubSig    = "sha256=SECREThubsignature0123456789"
		gitlab    = "SECRETgitlabtoken"
		slackSig  = "v0=SECRETslacksig"
		verify    = "SECRETslackverificationtoken"
		respURL   = "https://hooks.slack.com/actions/T1/2/SECRETresponseurl"
		discord   = "SECRETdiscordinteractiontoken"
		subnetSig = "SECRETsubnetsignature"
	)
	secrets := []string{"SECRET"}
	forEachEngine(t, func(t *testing.T, st engine) {
		ctx := context.Background()
		p := func(mailbox, provider, path string, h http.Header, body string) store.NewPayload {
			return store.NewPayload{MailboxName: mailbox, Provider: provider, Region: "us", Method: "POST", Path: path, Headers: h, Body: []byte(body)}
		}
		slack := p("slack:us:T1", "slack", "/extensions/slack/action/",
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Slack-Signature": {slackSig}},
			"payload="+url.QueryEscape(`{"token":"`+verify+`","response_url":"`+respURL+`"}`))
		slack.DestinationType, slack.CallbackURL = store.DestinationCallback, respURL
		rows := []store.NewPayload{
			p("jira_server:us:1", "jira_server", "/extensions/jira-server/issue-updated/"+jwt+"/", http.Header{"Content-Type": {"application/json"}}, `{}`),
			p("jira:us:2", "jira", "/extensions/jira/issue-updated/?jwt="+connect, http.Header{"Authorization": {"JWT " + connect}}, `{}`),
			p("github:us:3", "github", "/extensions/github/webhook/", http.Header{"X-Hub-Signature-256": {hubSig}, "X-Sentry-Subnet-Signature": {subnetSig}}, `{}`),
			p("gitlab:us:4", "gitlab", "/extensions/gitlab/webhook/", http.Header{"X-Gitlab-Token": {gitlab}}, `{}`),
			p("discord:us:5", "discord", "/extensions/discord/interactions/", http.Header{"Content-Type": {"application/json"}}, `{"type":2,"token":"`+discord+`"}`),
			slack,
		}
		var all []int64
		for range 3 { // one copy pending, one dead, one delivered
			all = append(all, insert(t, st, rows...)...)
		}
		n := len(rows)
		kill(t, st, "dropped_404", all[n:2*n]...)
		for _, id := range all[2*n:] {
			if err := st.DeliverPayload(ctx, id, store.Delivery{Status: 200, At: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		api := newAPI(st, &wakes{})
		paths := []string{"/sentry_silo/mailboxes", "/sentry_silo/payloads", "/sentry_silo/dead_letters", "/sentry_silo/delivered", "/sentry_silo/status"}
		for i, id := range all {
			route := []string{"payloads", "dead_letters", "delivered"}[i/n]
			paths = append(paths, fmt.Sprintf("/sentry_silo/%s/%d", route, id))
		}
		for _, r := range rows {
			paths = append(paths, "/sentry_silo/mailboxes/"+url.PathEscape(r.MailboxName))
		}
		for _, path := range paths {
			a := do(t, api, "GET", path)
			if a.status != http.StatusOK {
				t.Fatalf("GET %s = %d %s", path, a.status, a.raw)
			}
			for _, s := range secrets {
				if strings.Contains(a.raw, s) {
					t.Errorf("GET %s shows a secret:\n%s", path, a.raw)
				}
			}
		}
	})
}
