package credentials

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// The calls control makes as the Slack app use the bot token
// (access_token) even where the proxy sends the user token, for the
// staging app too; nothing else has one, and a missing token is refused
// without naming any token.
func TestAuthorizeSlackBot(t *testing.T) {
	st := newMemStore()
	m := newManager(st, Config{})
	cases := []struct {
		name, provider, md string
		want               string // the Authorization header, or "" for an error
		err                error
	}{
		{"bot token over the user token", Slack, `{"access_token":"xoxb-1","user_access_token":"xoxp-1"}`, "Bearer xoxb-1", nil},
		{"bot token only", Slack, `{"access_token":"xoxb-2"}`, "Bearer xoxb-2", nil},
		{"staging app", "slack_staging", `{"access_token":"xoxb-3"}`, "Bearer xoxb-3", nil},
		{"user token only is no bot token", Slack, `{"user_access_token":"xoxp-4"}`, "", ErrInvalid},
		{"no metadata", Slack, `{}`, "", ErrInvalid},
		{"not a slack integration", Discord, `{"access_token":"xoxb-6"}`, "", ErrUnsupported},
		{"a look-alike provider", "slackish", `{"access_token":"xoxb-7"}`, "", ErrUnsupported},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := int64(300 + i)
			st.metadata[id] = json.RawMessage(c.md)
			req := outbound(t, "https://slack.com/api/views.open")
			err := m.AuthorizeSlackBot(context.Background(), directory.Integration{ID: id, Provider: c.provider}, req)
			if c.err != nil {
				if !errors.Is(err, c.err) || req.Header.Get("Authorization") != "" {
					t.Fatalf("err %v, header %q; want %v and no header", err, req.Header.Get("Authorization"), c.err)
				}
				if strings.Contains(err.Error(), "xox") {
					t.Fatalf("error %q names a token", err)
				}
				return
			}
			if err != nil || req.Header.Get("Authorization") != c.want {
				t.Fatalf("err %v, header %q; want %q", err, req.Header.Get("Authorization"), c.want)
			}
		})
	}

	// The bot token is cached apart from the proxy's token of the same
	// integration.
	st.metadata[400] = json.RawMessage(`{"access_token":"xoxb-9","user_access_token":"xoxp-9"}`)
	proxied := outbound(t, "https://slack.com/api/chat.postMessage")
	if _, err := m.Authorize(context.Background(), Target{Integration: directory.Integration{ID: 400, Provider: Slack}}, proxied); err != nil || proxied.Header.Get("Authorization") != "Bearer xoxp-9" {
		t.Fatalf("proxy: %v %q", err, proxied.Header.Get("Authorization"))
	}
	bot := outbound(t, "https://slack.com/api/views.open")
	if err := m.AuthorizeSlackBot(context.Background(), directory.Integration{ID: 400, Provider: Slack}, bot); err != nil || bot.Header.Get("Authorization") != "Bearer xoxb-9" {
		t.Fatalf("bot after proxy: %v %q", err, bot.Header.Get("Authorization"))
	}
}
