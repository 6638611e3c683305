package webhooks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// Slack's control-side answers: the loading modal of the dialog actions
// and Seer's routing by the linked identity (slack_dialog.go,
// slack_seer.go). Each rule has a case it accepts and one it refuses.

func slackPayload(v map[string]any) url.Values {
	b, _ := json.Marshal(v)
	return url.Values{"payload": {string(b)}}
}

func dialogClick(option string, mutate func(map[string]any)) *Request {
	p := map[string]any{
		"type":         "block_actions",
		"team":         map[string]string{"id": "T123"},
		"trigger_id":   "13345224609.738474920.8088930838d88f008e0",
		"response_url": "https://hooks.slack.com/actions/T123/1/abc",
		"actions":      []map[string]string{{"action_id": "abc:1:2", "value": option, "action_ts": "1700000000.000100"}},
	}
	if mutate != nil {
		mutate(p)
	}
	return slackForm("/extensions/slack/action/", slackPayload(p))
}

// loadingView is the part of a views.open body the tests check.
type loadingView struct {
	TriggerID string `json:"trigger_id"`
	View      struct {
		Type       string    `json:"type"`
		ExternalID string    `json:"external_id"`
		Title      slackText `json:"title"`
		Blocks     []struct {
			Type    string    `json:"type"`
			BlockID string    `json:"block_id"`
			Text    slackText `json:"text"`
		} `json:"blocks"`
	} `json:"view"`
}

func TestSlackLoadingModal(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		off    bool // send_slack_response_from_control not set
		req    *Request
		action Action
		title  string // "" when no modal is opened
	}{
		{"resolve dialog opens the loading modal", false, dialogClick("resolve_dialog", nil), Callback, "Resolve Issue"},
		{"archive dialog opens the loading modal", false, dialogClick("archive_dialog", nil), Callback, "Archive Issue"},
		{"the option off: no modal", true, dialogClick("resolve_dialog", nil), Callback, ""},
		{"another action: no modal", false, dialogClick("resolve", nil), Callback, ""},
		{"the dialog named in action_id only: no modal (Sentry reads the value)", false, dialogClick("", func(p map[string]any) {
			p["actions"] = []map[string]string{{"action_id": "resolve_dialog", "action_ts": "1.2"}}
		}), Callback, ""},
		{"two actions: no modal", false, dialogClick("resolve_dialog", func(p map[string]any) {
			p["actions"] = []map[string]string{{"value": "resolve_dialog", "action_ts": "1.2"}, {"value": "x", "action_ts": "1.3"}}
		}), Callback, ""},
		{"no action_ts: no modal", false, dialogClick("resolve_dialog", func(p map[string]any) {
			p["actions"] = []map[string]string{{"value": "resolve_dialog"}}
		}), Callback, ""},
		{"no trigger_id: no modal", false, dialogClick("resolve_dialog", func(p map[string]any) { delete(p, "trigger_id") }), Callback, ""},
		{"no response_url: proxied to every region, no modal", false, dialogClick("resolve_dialog", func(p map[string]any) { delete(p, "response_url") }), ProxyAll, ""},
		{"unknown workspace: 400, no modal", false, dialogClick("resolve_dialog", func(p map[string]any) { p["team"] = map[string]string{"id": "TNOPE"} }), Respond, ""},
		{"a slash command is no dialog", false, slackForm("/extensions/slack/commands/", url.Values{"team_id": {"T123"}, "text": {"resolve_dialog"}, "response_url": {"https://hooks.slack.com/commands/T123/1/abc"}, "trigger_id": {"1.2.3"}}), Callback, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := testEnv(newFakeDir())
			env.SlackLoadingModal = !c.off
			res, err := parseSlack(ctx, env, c.req, "slack", slackSecret)
			if err != nil || res.Action != c.action {
				t.Fatalf("action %v err %v, want %v", res.Action, err, c.action)
			}
			if c.title == "" {
				if res.SlackCall != nil {
					t.Fatalf("a Slack call was made: %+v", res.SlackCall)
				}
				return
			}
			call := res.SlackCall
			if call == nil || call.Method != "views.open" || call.Kind != "loading_modal" || call.Integration.ID != 13 {
				t.Fatalf("call %+v, want views.open for integration 13", call)
			}
			var v loadingView
			if err := json.Unmarshal(call.Body, &v); err != nil {
				t.Fatal(err)
			}
			if v.TriggerID != "13345224609.738474920.8088930838d88f008e0" || v.View.Type != "modal" || v.View.ExternalID != "1700000000.000100" ||
				v.View.Title != (slackText{"plain_text", c.title}) || len(v.View.Blocks) != 1 ||
				v.View.Blocks[0].BlockID != "loading_block" || v.View.Blocks[0].Text != (slackText{"mrkdwn", "Loading..."}) {
				t.Fatalf("views.open body %s", call.Body)
			}
			// The region still gets the click, by the callback path.
			if res.CallbackURL != "https://hooks.slack.com/actions/T123/1/abc" || !reflect.DeepEqual(res.Regions, []string{"de"}) {
				t.Fatalf("callback %q regions %v", res.CallbackURL, res.Regions)
			}
		})
	}
}

// fakeIdentities links Slack users of workspaces to Sentry users.
type fakeIdentities struct {
	links   map[string]int64 // "type|workspace|slack user" -> user id
	members map[int64][]int64
	err     error
}

func (f *fakeIdentities) LinkedUser(_ context.Context, providerType, workspaceID, slackUserID string) (int64, error) {
	if f.err != nil {
		return 0, f.err
	}
	id, ok := f.links[providerType+"|"+workspaceID+"|"+slackUserID]
	if !ok {
		return 0, directory.ErrNotFound
	}
	return id, nil
}

func (f *fakeIdentities) MemberOrganizations(_ context.Context, userID int64, orgIDs []int64) ([]int64, error) {
	if f.err != nil {
		return nil, f.err
	}
	var out []int64
	for _, id := range f.members[userID] {
		if slices.Contains(orgIDs, id) {
			out = append(out, id)
		}
	}
	return out, nil
}

func slackEventBody(team string, event map[string]any) *Request {
	b, _ := json.Marshal(map[string]any{"type": "event_callback", "team_id": team, "event_id": "Ev1", "event": event})
	return slackSigned("/extensions/slack/event/", "application/json", string(b), testNow)
}

func mention(user, text string) map[string]any {
	return map[string]any{"type": "app_mention", "user": user, "channel": "C1", "text": text, "ts": "1.5", "thread_ts": "1.0"}
}

func TestSlackSeerRouting(t *testing.T) {
	ctx := context.Background()
	ids := &fakeIdentities{
		links: map[string]int64{
			"slack|T123|UACME": 1, "slack|T123|UBOTH": 2, "slack|T123|UNONE": 3,
			"slack|TAST|UACME": 1, "slack|TGAM|UGAMMA": 4,
		},
		members: map[int64][]int64{1: {1}, 2: {1, 2}, 3: {99}, 4: {3}},
	}
	dir := newFakeDir()
	dir.integrations = append(dir.integrations,
		// A workspace that granted assistant:write: its DMs are Seer's.
		directory.Integration{ID: 40, Provider: "slack", ExternalID: "TAST", Metadata: json.RawMessage(`{"scopes":["chat:write","assistant:write"]}`), Organizations: []directory.OrganizationIntegration{beta, acme}},
		// acme and gamma, whose region is not configured.
		directory.Integration{ID: 41, Provider: "slack", ExternalID: "TGAM", Organizations: []directory.OrganizationIntegration{acme, {OrganizationID: 3, Region: "mars"}}},
	)
	type expect struct {
		action  Action
		regions []string
		halt    string
		// haltTo is the channel|user|thread of the halt message, "" for
		// none.
		haltTo   string
		delivery string
	}
	cases := []struct {
		name    string
		req     *Request
		nodedup bool
		want    expect
	}{
		{"a mention goes to its user's organization's region, not the first", slackEventBody("T123", mention("UACME", "help")),
			false, expect{action: Capture, regions: []string{"us"}, delivery: "Ev1"}},
		{"of two organizations, the first without a link", slackEventBody("T123", mention("UBOTH", "help")),
			false, expect{action: Capture, regions: []string{"de"}, delivery: "Ev1"}},
		{"of two organizations, the one an organization domain link names", slackEventBody("T123", mention("UBOTH", "why <https://acme.sentry.io/issues/12/|this>?")),
			false, expect{action: Capture, regions: []string{"us"}, delivery: "Ev1"}},
		{"of two organizations, the one an organizations/ link names", slackEventBody("T123", mention("UBOTH", "see https://sentry.io/organizations/acme/issues/12/")),
			false, expect{action: Capture, regions: []string{"us"}, delivery: "Ev1"}},
		{"a link to an organization not among the candidates is ignored", slackEventBody("T123", mention("UBOTH", "https://other.sentry.io/issues/1/")),
			false, expect{action: Capture, regions: []string{"de"}, delivery: "Ev1"}},
		{"an assistant thread names its user in assistant_thread", slackEventBody("T123", map[string]any{"type": "assistant_thread_started", "assistant_thread": map[string]string{"user_id": "UACME", "channel_id": "D1", "thread_ts": "2.0"}}),
			false, expect{action: Capture, regions: []string{"us"}, delivery: "Ev1"}},
		{"a DM with assistant:write is Seer's", slackEventBody("TAST", map[string]any{"type": "message", "user": "UACME", "channel": "D1", "text": "hi"}),
			false, expect{action: Capture, regions: []string{"us"}, delivery: "Ev1"}},
		{"a DM without assistant:write is not: the first region", slackEventBody("T123", map[string]any{"type": "message", "user": "UACME", "channel": "D1", "text": "hi"}),
			false, expect{action: Capture, regions: []string{"de"}, delivery: "Ev1"}},
		{"another event type is not Seer's: the first region", slackEventBody("T123", map[string]any{"type": "link_shared", "user": "UACME", "channel": "C1"}),
			false, expect{action: Capture, regions: []string{"de"}, delivery: "Ev1"}},
		{"dedupe off: no delivery key", slackEventBody("T123", mention("UACME", "help")),
			true, expect{action: Capture, regions: []string{"us"}}},
		{"an unlinked user is halted and told", slackEventBody("T123", mention("USTRANGER", "help")),
			false, expect{action: Respond, halt: SeerIdentityNotLinked, haltTo: "C1|USTRANGER|1.0"}},
		{"a user of none of the organizations is halted", slackEventBody("T123", mention("UNONE", "help")),
			false, expect{action: Respond, halt: SeerNoValidOrganization, haltTo: "C1|UNONE|1.0"}},
		{"an organization in no configured region is no candidate", slackEventBody("TGAM", mention("UGAMMA", "help")),
			false, expect{action: Respond, halt: SeerNoValidOrganization, haltTo: "C1|UGAMMA|1.0"}},
		{"an assistant thread's halt goes to its channel and thread", slackEventBody("T123", map[string]any{"type": "assistant_thread_started", "assistant_thread": map[string]string{"user_id": "USTRANGER", "channel_id": "D9", "thread_ts": "3.0"}}),
			false, expect{action: Respond, halt: SeerIdentityNotLinked, haltTo: "D9|USTRANGER|3.0"}},
		{"a mention without a user is halted with no one to tell", slackEventBody("T123", map[string]any{"type": "app_mention", "channel": "C1"}),
			false, expect{action: Respond, halt: SeerIdentityNotLinked}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := testEnv(dir)
			env.Identities = ids
			env.SlackDedupeSeerEvents = !c.nodedup
			res, err := parseSlack(ctx, env, c.req, "slack", slackSecret)
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != c.want.action || !reflect.DeepEqual(res.Regions, c.want.regions) || res.SeerHalt != c.want.halt || res.DeliveryKey != c.want.delivery {
				t.Fatalf("got action %v regions %v halt %q delivery %q, want %+v", res.Action, res.Regions, res.SeerHalt, res.DeliveryKey, c.want)
			}
			if c.want.action == Respond && res.Status != http.StatusOK {
				t.Fatalf("halt answered %d, want 200 (Slack retries anything else)", res.Status)
			}
			if c.want.haltTo == "" {
				if res.SlackCall != nil {
					t.Fatalf("unexpected Slack call %s %s", res.SlackCall.Method, res.SlackCall.Body)
				}
				return
			}
			var msg struct{ Channel, User, Text, Thread_TS string }
			if res.SlackCall == nil || res.SlackCall.Method != "chat.postEphemeral" || json.Unmarshal(res.SlackCall.Body, &msg) != nil {
				t.Fatalf("call %+v, want chat.postEphemeral", res.SlackCall)
			}
			if got := msg.Channel + "|" + msg.User + "|" + msg.Thread_TS; got != c.want.haltTo || msg.Text != seerHaltText[c.want.halt] {
				t.Fatalf("halt message to %s %q, want %s", got, msg.Text, c.want.haltTo)
			}
		})
	}
}

// A failing identity lookup is the handler's 503, as a failing directory
// is; a body whose event is not an object is refused; without identities
// a mention goes to the first region as before.
func TestSlackSeerFailures(t *testing.T) {
	ctx := context.Background()
	env := testEnv(newFakeDir())
	env.Identities = &fakeIdentities{err: errDown}
	if _, err := parseSlack(ctx, env, slackEventBody("T123", mention("UACME", "x")), "slack", slackSecret); err == nil {
		t.Fatal("identity lookup failure: no error")
	}
	bad := slackSigned("/extensions/slack/event/", "application/json", `{"type":"event_callback","team_id":"T123","event":{"type":["app_mention"]}}`, testNow)
	if res, _ := parseSlack(ctx, env, bad, "slack", slackSecret); res.Status != http.StatusBadRequest || res.Reason != ReasonBadBody {
		t.Fatalf("bad event: %+v", res)
	}
	env.Identities = nil
	res, err := parseSlack(ctx, env, slackEventBody("T123", mention("UACME", "x")), "slack", slackSecret)
	if err != nil || res.Action != Capture || !reflect.DeepEqual(res.Regions, []string{"de"}) {
		t.Fatalf("without identities: %+v %v", res, err)
	}
}

func TestLinkedSlugs(t *testing.T) {
	cases := map[string][]string{
		"<https://acme.sentry.io/issues/1/|x> and https://sentry.io/organizations/beta/issues/2/": {"acme", "beta"},
		"https://sentry.example.com/organizations/my_org/":                                        {"my_org"},
		"no links, acme.sentry.io without a scheme":                                               nil,
	}
	for text, want := range cases {
		if got := linkedSlugs(text); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %v, want %v", text, got, want)
		}
	}
	if strings.Contains(seerHaltText[SeerIdentityNotLinked], "http") {
		t.Error("the halt message carries a link the edge cannot sign")
	}
}

// BenchmarkParseSlackEvent measures what reading the inner event for Seer
// adds to an event that is not Seer's (most of a workspace's events).
func BenchmarkParseSlackEvent(b *testing.B) {
	req := slackEventBody("T123", map[string]any{"type": "link_shared", "user": "U1", "channel": "C1", "links": []map[string]string{{"url": "https://acme.sentry.io/issues/1/"}}})
	for _, seer := range []bool{false, true} {
		b.Run(map[bool]string{false: "without_seer", true: "with_seer"}[seer], func(b *testing.B) {
			env := testEnv(newFakeDir())
			env.SlackSigningSecret = nil
			if seer {
				env.Identities = &fakeIdentities{}
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, res, err := Parse(context.Background(), env, req); err != nil || res.Action != Capture {
					b.Fatalf("%+v %v", res, err)
				}
			}
		})
	}
}
