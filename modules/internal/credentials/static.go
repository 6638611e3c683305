package credentials

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// Slack installations keep two static tokens in their metadata: the bot
// token (access_token) and, for workspaces that granted user scopes, a
// user token (user_access_token). The credential proxy sends the user
// token when there is one (Sentry's SlackClient); the calls control makes
// itself as the app (views.open for the loading modal, chat.postEphemeral
// for a halt message) use the bot token, as Sentry's SlackSdkClient does.
var (
	slackProxyKeys = []string{"user_access_token", "access_token"}
	slackBotKeys   = []string{"access_token"}
)

// slackToken sets Slack's static token for the credential proxy.
func (m *Manager) slackToken(ctx context.Context, t Target, req *http.Request) (Grant, error) {
	tok, err := m.staticToken(ctx, t.Integration.ID, "", slackProxyKeys)
	if err != nil {
		return Grant{}, err
	}
	bearer(req, tok)
	return Grant{}, nil
}

// AuthorizeSlackBot sets the bot token of a Slack (or Slack staging)
// integration on req, for the Web API calls control makes as the app. The
// token is read like every other one (memory for a few seconds, else the
// store) and never leaves this package but in the header.
func (m *Manager) AuthorizeSlackBot(ctx context.Context, in directory.Integration, req *http.Request) error {
	if in.Provider != Slack && in.Provider != SlackStaging {
		return fmt.Errorf("%w: %s integration %d has no Slack bot token", ErrUnsupported, in.Provider, in.ID)
	}
	tok, err := m.staticToken(ctx, in.ID, ":bot", slackBotKeys)
	if err != nil {
		return err
	}
	bearer(req, tok)
	return nil
}

// staticToken returns the first of keys set in an integration's metadata.
// Never refreshed; cached under its own suffix, since the proxy's and the
// bot's tokens of one integration may differ.
func (m *Manager) staticToken(ctx context.Context, integrationID int64, suffix string, keys []string) (string, error) {
	key := rowKey(kindIntegration, integrationID) + suffix
	if tok, ok := m.tokens.get(key, m.cfg.Now()); ok {
		return tok, nil
	}
	doc, err := m.readDocument(ctx, kindIntegration, integrationID)
	if err != nil {
		return "", err
	}
	for _, k := range keys {
		if tok := doc.str(k); tok != "" {
			m.remember(key, tok, nil, tokenSlot{})
			return tok, nil
		}
	}
	return "", fmt.Errorf("%w: slack integration has no %s", ErrInvalid, strings.Join(keys, " or "))
}

func (m *Manager) discordToken(req *http.Request) (Grant, error) {
	if m.cfg.DiscordBotToken == "" {
		return Grant{}, errNotConfigured(Discord, "discord_bot_token")
	}
	req.Header.Set("Authorization", "Bot "+m.cfg.DiscordBotToken)
	return Grant{}, nil
}
