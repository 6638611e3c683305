package webhooks

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// The structs and decoding the gjson readers replaced. They are the
// reference the readers must agree with on every body outside the two
// documented differences (case-folded and repeated member names).
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
}

func oldDecode(body []byte, v any) error {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return errNotObject
	}
	return json.Unmarshal(b, v)
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

// namesDiffer reports whether body is one on which gjson and encoding/json
// are documented to differ: an object repeats a name, or has a name that
// matches a looked-up one only when case is folded.
func namesDiffer(body []byte) bool {
	type frame struct {
		object, wantKey bool
		keys            map[string]bool
	}
	var stack []*frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			if k, ok := tok.(string); ok {
				f := stack[n-1]
				if f.keys[k] {
					return true
				}
				f.keys[k] = true
				for _, name := range memberNames {
					if k != name && strings.EqualFold(k, name) {
						return true
					}
				}
				f.wantKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, wantKey: true, keys: map[string]bool{}})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
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

// TestDocumentedDifferences pins the two ways the readers differ from
// encoding/json.
func TestDocumentedDifferences(t *testing.T) {
	for _, tc := range []struct {
		body, want string
	}{
		{`{"Installation":{"ID":555}}`, ""},
		{`{"installation":{"ID":555}}`, ""},
		{`{"installation":{"id":1},"installation":{"id":2}}`, "1"},
		{`{"installation":{"id":1,"id":2}}`, "1"},
	} {
		ev, err := readGitHubEvent([]byte(tc.body))
		if err != nil || string(ev.InstallationID) != tc.want {
			t.Errorf("%s: installation id %q (%v), want %q", tc.body, ev.InstallationID, err, tc.want)
		}
		if !namesDiffer([]byte(tc.body)) {
			t.Errorf("%s: namesDiffer is false", tc.body)
		}
	}
}

func TestPathOfEscapes(t *testing.T) {
	p := pathOf("a.b", "c*?|#@\\d", "e")
	if want := `a\.b.c\*\?\|\#\@\\d.e`; p.path != want {
		t.Errorf("path = %s, want %s", p.path, want)
	}
	if want := []string{`a\.b`, `a\.b.c\*\?\|\#\@\\d`}; !reflect.DeepEqual(p.parents, want) {
		t.Errorf("parents = %q, want %q", p.parents, want)
	}
	body, err := parseObject([]byte(`{"a.b":{"c*?|#@\\d":{"e":"x"}},"a":{"b":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := body.str(p); got != "x" || body.err() != nil {
		t.Errorf("escaped path read %q (%v)", got, body.err())
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
