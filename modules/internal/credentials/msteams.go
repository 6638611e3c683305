package credentials

import (
	"context"
	"net/http"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// msteamsSkew is Sentry's CLOCK_SKEW: a bot token is considered expired
// five minutes before the token endpoint says.
const msteamsSkew = 300 * time.Second

var msteamsSlot = tokenSlot{provider: MSTeams, expiryKey: "expires_at", expiryRequired: true}

// msteams authorises a Bot Framework call with the bot's client-credentials
// token, kept in metadata.{access_token, expires_at (Unix seconds)}.
func (m *Manager) msteams(ctx context.Context, t Target, req *http.Request, failed *Grant) (Grant, error) {
	tok, err := m.documentToken(ctx, kindIntegration, t.Integration.ID, msteamsSlot, failed, m.msteamsToken)
	if err != nil {
		return Grant{}, err
	}
	bearer(req, tok)
	return Grant{token: tok, refreshable: true}, nil
}

func (m *Manager) msteamsToken(ctx context.Context, _ document) (string, map[string]any, error) {
	c := m.cfg.MSTeams
	if c.ClientID == "" || c.ClientSecret == "" {
		return "", nil, errNotConfigured(MSTeams, "msteams_client_id and msteams_client_secret")
	}
	cc := clientcredentials.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.ClientSecret,
		TokenURL:     c.TokenURL,
		Scopes:       []string{"https://api.botframework.com/.default"},
		AuthStyle:    oauth2.AuthStyleInParams,
	}
	tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, m.cfg.HTTPClient))
	if err != nil {
		return "", nil, oauthError(MSTeams, err)
	}
	exp := tok.Expiry
	if exp.IsZero() {
		exp = m.cfg.Now().Add(time.Hour)
	}
	return tok.AccessToken, map[string]any{"expires_at": exp.Add(-msteamsSkew).Unix()}, nil
}
