package credentials

import (
	"fmt"
	"net/http"
)

// slackToken sets Slack's static token: the user token when the
// installation has one, else the bot token.
func slackToken(t Target, req *http.Request) (Grant, error) {
	doc := parseDocument(t.Integration.Metadata)
	tok := doc.str("user_access_token")
	if tok == "" {
		tok = doc.str("access_token")
	}
	if tok == "" {
		return Grant{}, fmt.Errorf("%w: slack integration has no access token", ErrInvalid)
	}
	bearer(req, tok)
	return Grant{}, nil
}

func (m *Manager) discordToken(req *http.Request) (Grant, error) {
	if m.cfg.DiscordBotToken == "" {
		return Grant{}, errNotConfigured(Discord, "discord_bot_token")
	}
	req.Header.Set("Authorization", "Bot "+m.cfg.DiscordBotToken)
	return Grant{}, nil
}
