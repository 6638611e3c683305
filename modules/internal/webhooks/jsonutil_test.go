package webhooks

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// The structs and decoding the gjson readers replaced. Applied to the
// body with its repeated names resolved the way json.loads resolves them
// (canonical), they are the reference the readers must agree with on
// every body outside the one documented difference (case-folded names).
type (
	oldGitHubEvent struct {
		Installation struct {
			ID flexID `json:"id"`
		} `json:"installation"`
		Repository struct {
			ID flexID `json:"id"`
		} `json:"repository"`
	}
	oldGitLabEvent struct {
		Project struct {
			ID flexID `json:"id"`
		} `json:"project"`
	}
	oldVSTSEvent struct {
		ID                 string `json:"id"`
		ResourceContainers struct {
			Collection struct {
				ID string `json:"id"`
			} `json:"collection"`
		} `json:"resourceContainers"`
	}
	oldJiraServerEvent struct {
		Changelog json.RawMessage `json:"changelog"`
		Issue     struct {
			ID flexID `json:"id"`
		} `json:"issue"`
	}
	// Without the id and action members the old struct also declared:
	// nothing read them, and the readers no longer check their types.
	oldMSTeamsActivity struct {
		Type  string `json:"type"`
		Value struct {
			Payload struct {
				IntegrationID flexID `json:"integrationId"`
			} `json:"payload"`
		} `json:"value"`
		ChannelData struct {
			EventType string `json:"eventType"`
			Team      struct {
				ID string `json:"id"`
			} `json:"team"`
			Tenant struct {
				ID string `json:"id"`
			} `json:"tenant"`
		} `json:"channelData"`
	}
	// oldSlackEvent is the encoding/json decoding of readSlackEvent's
	// members, for the comparison only (the reader came with Seer
	// routing and replaced nothing).
	oldSlackEvent struct {
		Event struct {
			Type            string `json:"type"`
			User            string `json:"user"`
			Channel         string `json:"channel"`
			ThreadTS        string `json:"thread_ts"`
			Text            string `json:"text"`
			AssistantThread struct {
				UserID    string `json:"user_id"`
				ChannelID string `json:"channel_id"`
				ThreadTS  string `json:"thread_ts"`
			} `json:"assistant_thread"`
		} `json:"event"`
	}
	oldDiscordInteraction struct {
		Type          int    `json:"type"`
		GuildID       string `json:"guild_id"`
		ApplicationID string `json:"application_id"`
		Token         string `json:"token"`
	}
	oldSlackRequest struct {
		Type        string `json:"type"`
		Challenge   string `json:"challenge"`
		TeamID      string `json:"team_id"`
		EventID     string `json:"event_id"`
		ResponseURL string `json:"response_url"`
		Team        struct {
			ID string `json:"id"`
		} `json:"team"`
		Actions []struct {
			ActionID string `json:"action_id"`
			Name     string `json:"name"`
			Value    string `json:"value"`
		} `json:"actions"`
	}
)

// memberNames are every name the readers look up.
var memberNames = []string{
	"installation", "repository", "id", "project", "resourceContainers", "collection",
	"changelog", "issue", "type", "value", "payload", "integrationId", "channelData",
	"eventType", "team", "tenant", "guild_id", "application_id", "token", "challenge",
	"team_id", "event_id", "response_url", "actions", "action_id", "name",
	"event", "user", "channel", "thread_ts", "text", "assistant_thread", "user_id", "channel_id",
}

func oldDecode(body []byte, v any) error {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return errNotObject
	}
	if !json.Valid(b) {
		return json.Unmarshal(b, v) // the same syntax error
	}
	return json.Unmarshal(canonical(b), v)
}

// canonical is a valid JSON text with each repeated member name reduced
// to its last occurrence, at every level, as Python's json.loads (and so
// the region) reads it. Decoding into a struct does not do that by
// itself: a repeated object is merged into the field, so
// {"installation":{"id":1},"installation":{}} would keep id 1, and a
// repeated null leaves the field alone; decoding into maps replaces.
// Numbers keep their text.
func canonical(b []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		panic(err) // b is valid
	}
	out, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return out
}

// readers pairs each reader with the old decoding, both giving the
// reader's result type.
var readers = []struct {
	name    string
	read    func([]byte) (any, error)
	decoded func([]byte) (any, error)
}{
	{"github", func(b []byte) (any, error) { return readGitHubEvent(b) }, func(b []byte) (any, error) {
		var v oldGitHubEvent
		err := oldDecode(b, &v)
		return githubEvent{InstallationID: v.Installation.ID, RepositoryID: v.Repository.ID}, err
	}},
	{"gitlab", func(b []byte) (any, error) { return readGitLabEvent(b) }, func(b []byte) (any, error) {
		var v oldGitLabEvent
		err := oldDecode(b, &v)
		return gitlabEvent{ProjectID: v.Project.ID}, err
	}},
	{"vsts", func(b []byte) (any, error) { return readVSTSEvent(b) }, func(b []byte) (any, error) {
		var v oldVSTSEvent
		err := oldDecode(b, &v)
		return vstsEvent{ID: v.ID, CollectionID: v.ResourceContainers.Collection.ID}, err
	}},
	{"jira_server", func(b []byte) (any, error) { return readJiraServerEvent(b) }, func(b []byte) (any, error) {
		var v oldJiraServerEvent
		err := oldDecode(b, &v)
		return jiraServerEvent{HasChangelog: len(v.Changelog) > 0 && string(v.Changelog) != "null", IssueID: v.Issue.ID}, err
	}},
	{"msteams", func(b []byte) (any, error) { return readMSTeamsActivity(b) }, func(b []byte) (any, error) {
		var v oldMSTeamsActivity
		err := oldDecode(b, &v)
		return msteamsActivity{
			Type: v.Type, EventType: v.ChannelData.EventType, TeamID: v.ChannelData.Team.ID,
			TenantID: v.ChannelData.Tenant.ID, IntegrationID: v.Value.Payload.IntegrationID,
		}, err
	}},
	{"discord", func(b []byte) (any, error) { return readDiscordInteraction(b) }, func(b []byte) (any, error) {
		var v oldDiscordInteraction
		err := oldDecode(b, &v)
		return discordInteraction{Type: int64(v.Type), GuildID: v.GuildID, ApplicationID: v.ApplicationID, Token: v.Token}, err
	}},
	{"slack event", func(b []byte) (any, error) { return readSlackEvent(b) }, func(b []byte) (any, error) {
		var v oldSlackEvent
		err := oldDecode(b, &v)
		e := v.Event
		ev := slackEvent{Type: e.Type, Text: e.Text, User: e.User, Channel: e.Channel, ThreadTS: e.ThreadTS}
		if e.Type == "assistant_thread_started" {
			ev.User, ev.Channel, ev.ThreadTS = e.AssistantThread.UserID, e.AssistantThread.ChannelID, e.AssistantThread.ThreadTS
		}
		return ev, err
	}},
	{"slack", func(b []byte) (any, error) { return readSlackJSON(b) }, func(b []byte) (any, error) {
		var v oldSlackRequest
		err := oldDecode(b, &v)
		sr := slackRequest{Type: v.Type, Challenge: v.Challenge, TeamID: v.TeamID, EventID: v.EventID, ResponseURL: v.ResponseURL}
		sr.Team.ID = v.Team.ID
		for _, a := range v.Actions {
			sr.Actions = append(sr.Actions, slackAction{ActionID: a.ActionID, Name: a.Name, Value: a.Value})
		}
		return sr, err
	}},
}

// namesDiffer reports whether body is one on which the readers and
// encoding/json are documented to differ: an object has a name that
// matches a looked-up one only when case is folded.
func namesDiffer(body []byte) bool {
	// The bytes oldDecode decodes: trimmed as it trims them. Untrimmed, a
	// body led by a space json does not allow ("\v{\"instAllAtion\":...}",
	// found by the fuzzer in CI) stopped the tokenizer at once, and the
	// case-folded name went unseen.
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimSpace(body)))
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		// Names and string values both come as strings; a value
		// spelt like a name only makes the check skip a body.
		if k, ok := tok.(string); ok {
			for _, name := range memberNames {
				if k != name && strings.EqualFold(k, name) {
					return true
				}
			}
		}
	}
}

func checkReadersMatch(t *testing.T, body []byte) {
	t.Helper()
	if namesDiffer(body) {
		return
	}
	for _, r := range readers {
		got, gotErr := r.read(body)
		want, wantErr := r.decoded(body)
		if (gotErr != nil) != (wantErr != nil) {
			t.Fatalf("%s %q: reader error %v, encoding/json error %v", r.name, short(body), gotErr, wantErr)
		}
		if gotErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%s %q:\nreader        %+v\nencoding/json %+v", r.name, short(body), got, want)
		}
	}
}

func short(b []byte) []byte {
	if len(b) > 200 {
		return append(b[:100:100], "…"+string(b[len(b)-100:])...)
	}
	return b
}

// jsonSeeds are bodies that exercise each rule the readers keep.
var jsonSeeds = []string{
	`{"installation":{"id":555},"repository":{"id":4242}}`,
	`{"installation":{"id":"555"},"repository":{"id":"4242"}}`,
	`{"installation":{"id":null},"repository":{"id":{"n":1}}}`,
	`{"installation":{"id":[1]},"repository":{"id":true}}`,
	`{"installation":{"id":-1.5e3},"repository":{"id":9223372036854775808}}`,
	`{"installation":null,"repository":null}`,
	`{"installation":"555"}`,
	`{"installation":[{"id":555}]}`,
	`{"repository":7,"installation":{"id":1}}`,
	`{"install\u0061tion":{"i\u0064":"5\u00e9\ud800\udc00\ud800x\udc00"}}`,
	"{\"installation\":{\"id\":\"a\xff\xfeb\xed\xa0\x80\"}}",
	"\f\v {\"installation\":{\"id\":1}}\u00a0\n",
	"\xef\xbb\xbf{}",
	`[{"installation":{"id":555}}]`,
	`"installation"`,
	`null`,
	``,
	`{"installation":{"id":555}`,
	`{"installation":{"id":555}} x`,
	`{"installation":{"id":01}}`,
	`{"project":{"id":9},"id":"n-1","resourceContainers":{"collection":{"id":"coll-1"}}}`,
	`{"resourceContainers":{"collection":{"id":5}}}`,
	`{"resourceContainers":{"collection":"coll-1"}}`,
	`{"resourceContainers":[]}`,
	`{"id":7}`,
	`{"changelog":{"items":[]},"issue":{"id":"10042"}}`,
	`{"changelog":null,"issue":{"id":1}}`,
	`{"changelog":0,"issue":"x"}`,
	`{"type":"message","value":{"payload":{"integrationId":19}},"channelData":{"team":{"id":"team-1"},"tenant":{"id":"t"},"eventType":"x"}}`,
	`{"type":"message","value":{"payload":"x"}}`,
	`{"type":"message","value":{"payload":null},"channelData":{"team":null,"tenant":{"id":3}}}`,
	`{"type":1,"guild_id":"G1","application_id":"a","token":"t"}`,
	`{"type":"1"}`,
	`{"type":1.0}`,
	`{"type":1e0}`,
	`{"type":-0}`,
	`{"type":99999999999999999999}`,
	`{"type":null,"guild_id":null}`,
	`{"type":"event_callback","team_id":"T1","event_id":"Ev1","challenge":"c","response_url":"https://h/x"}`,
	`{"team":{"id":"T1"},"actions":[{"action_id":"a","name":"n","value":"v"},null,{}]}`,
	`{"actions":[]}`,
	`{"actions":null}`,
	`{"actions":{}}`,
	`{"actions":["x"]}`,
	`{"actions":[{"value":1}]}`,
	`{"team":"T1"}`,
	`{"challenge":{"a":"b"}}`,
	`{"Installation":{"id":1}}`,
	`{"installation":{"id":1},"installation":{"id":2}}`,
	`{"installation":{"id":1,"id":"2"},"repository":{"id":3},"repository":null}`,
	`{"installation":{"id":1},"installation":{}}`,
	`{"installation":"x","installation":{"id":2}}`,
	`{"installation":{"id":1},"installation":7}`,
	`{"actions":[{"action_id":"a","action_id":1}]}`,
	`{"actions":[{"action_id":1,"action_id":"a"}],"team":{"id":"T1"},"team":{"id":"T2","id":"T3"}}`,
	`{"type":"x","type":2}`,
	`{"changelog":{},"changelog":null}`,
	`{"value":{"payload":{"integrationId":1}},"value":{"payload":null}}`,
	// The validator's corners.
	`{"type":01}`, `{"type":1.}`, `{"type":-}`, `{"type":1e}`, `{"type":1e+}`, `{"type":-0.5E-3}`, `{"type":.5}`,
	`{"type":+1}`, `{"token":"\u12"}`, `{"token":"\u12g4"}`, `{"token":"\x"}`, "{\"token\":\"a\tb\"}",
	`{"token":"\"\\\/\b\f\n\r\t\u00e9"}`, `{"a":tru}`, `{"a":nul}`, `{"a":truex}`, `{"a":[1,]}`, `{"a":1,}`,
	`{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{"a":1 "b":2}`, `{"a":[1 2]}`, `{"a":[[[]],{}]}`, "{\"a\":1}\u0000",
	"{ \"type\" : 2 , \"guild_id\"\t:\r\"G1\"\n}", `{"a":"\\"}`, `{"a":"\\\""}`, `{"installation":{"id":1}`,
	`{"installation":{"id":1}}}`, `{"installation":{"id":1]}`, `{"\u0069d":1,"id":2}`, `{"a":"`, `{"a`, `{`,
	`{"event":{"type":"app_mention","user":"U1","channel":"C1","text":"hi","thread_ts":"1.0"}}`,
	`{"event":{"type":"assistant_thread_started","assistant_thread":{"user_id":"U1","channel_id":"D1","thread_ts":"2.0"}}}`,
	`{"event":"x"}`, `{"event":{"type":1}}`, `{"event":{"assistant_thread":[]}}`, `{"event":{"user":"U1","user":"U2"}}`,
}

func TestReadersMatchEncodingJSON(t *testing.T) {
	for _, s := range jsonSeeds {
		checkReadersMatch(t, []byte(s))
	}
	// encoding/json refused nesting deeper than 10000, and so do the
	// readers, before gjson's validator recurses into it.
	for _, depth := range []int{maxJSONDepth - 1, maxJSONDepth, maxJSONDepth + 1, 200000} {
		body := `{"installation":{"id":1},"x":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
		checkReadersMatch(t, []byte(body))
		_, err := readGitHubEvent([]byte(body))
		if wantErr := depth > maxJSONDepth; (err != nil) != wantErr {
			t.Errorf("depth %d: error %v, want error %v", depth, err, wantErr)
		}
	}
	// Brackets inside strings do not nest.
	body := `{"installation":{"id":1},"x":"` + strings.Repeat("[", 3*maxJSONDepth) + `"}`
	if _, err := readGitHubEvent([]byte(body)); err != nil {
		t.Errorf("brackets in a string: %v", err)
	}
}

// TestRepeatedNamesCountLast pins the rule the region follows: the last
// occurrence of a name counts, at every level, whatever the earlier ones
// held; and the one documented difference from encoding/json.
func TestRepeatedNamesCountLast(t *testing.T) {
	for _, tc := range []struct {
		body, want string
		bad        bool
	}{
		{`{"installation":{"id":1},"installation":{"id":2}}`, "2", false},
		{`{"installation":{"id":1,"id":2}}`, "2", false},
		{`{"installation":{"id":1},"x":{"installation":{"id":3}},"installation":{"id":2}}`, "2", false},
		{`{"installation":{"id":1},"installation":{}}`, "", false},
		{`{"installation":{"id":1},"installation":null}`, "", false},
		{`{"installation":{"id":1},"installation":"x"}`, "", true},
		{`{"installation":"x","installation":{"id":2}}`, "2", false},
		{`{"installation":{"id":[1]},"installation":{"id":2}}`, "2", false},
		{`{"installation":{"id":1},"inst\u0061llation":{"id":2}}`, "2", false},
		{`{"Installation":{"ID":555}}`, "", false}, // case-sensitive, unlike encoding/json
		{`{"installation":{"ID":555}}`, "", false},
	} {
		ev, err := readGitHubEvent([]byte(tc.body))
		if (err != nil) != tc.bad || string(ev.InstallationID) != tc.want {
			t.Errorf("%s: installation id %q (%v), want %q (error %v)", tc.body, ev.InstallationID, err, tc.want, tc.bad)
		}
	}
	for _, body := range []string{`{"Installation":{"ID":555}}`, `{"installation":{"ID":555}}`} {
		if !namesDiffer([]byte(body)) {
			t.Errorf("%s: namesDiffer is false", body)
		}
	}
}

// Member names are matched as they are: no character of a name means
// anything to the reader.
func TestMemberNamesAreLiteral(t *testing.T) {
	var r jsonReader
	p := r.path("a.b", "c*?|#@\\d", "e")
	body, err := r.parse([]byte(`{"a.b":{"c*?|#@\\d":{"e":"x"}},"a":{"b":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := body.str(p); got != "x" || body.err() != nil {
		t.Errorf("read %q (%v)", got, body.err())
	}
}

// FuzzReadersMatchEncodingJSON checks every reader against the
// encoding/json decoding it replaced, on arbitrary bodies.
func FuzzReadersMatchEncodingJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkReadersMatch(t, body)
	})
}
