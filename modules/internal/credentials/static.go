package credentials

import (
	"context"
	"fmt"
	"net/http"
)

// slackToken sets Slack's static token: the user token when the
// installation has one, else the bot token. Never refreshed; read like
// the others (memory for a few seconds, else the store).
func (m *Manager) slackToken(ctx context.Context, t Target, req *http.Request) (Grant, error) {
	key := rowKey(kindIntegration, t.Integration.ID)
	tok, ok := m.tokens.get(key, m.cfg.Now())
	if !ok {
		doc, err := m.readDocument(ctx, kindIntegration, t.Integration.ID)
		if err != nil {
			return Grant{}, err
		}
		if tok = doc.str("user_access_token"); tok == "" {
			tok = doc.str("access_token")
		}
		if tok == "" {
			return Grant{}, fmt.Errorf("%w: slack integration has no access token", ErrInvalid)
		}
		m.remember(key, tok, nil, tokenSlot{})
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
