package credentials

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// oauthIdentity authorises a GitLab or Azure DevOps call with the OAuth
// token of the organization integration's default identity, refreshed with
// a refresh_token grant. The identity is read from the store on every
// call, never from a cache.
func (m *Manager) oauthIdentity(ctx context.Context, t Target, req *http.Request, failed *Grant) (Grant, error) {
	provider := t.Integration.Provider
	authID := t.OrgIntegration.DefaultAuthID
	if authID == nil {
		return Grant{}, fmt.Errorf("%w: organization integration has no default identity", ErrInvalid)
	}
	slot := tokenSlot{provider: provider, expiryKey: "expires"}
	tok, err := m.documentToken(ctx, kindIdentity, *authID, slot, failed, func(ctx context.Context, cur document) (string, map[string]any, error) {
		return m.oauthRefresh(ctx, t, cur)
	})
	if err != nil {
		return Grant{}, err
	}
	bearer(req, tok)
	return Grant{token: tok, refreshable: true}, nil
}

func (m *Manager) oauthRefresh(ctx context.Context, t Target, cur document) (string, map[string]any, error) {
	provider := t.Integration.Provider
	client, ok := m.cfg.OAuth[provider]
	if !ok || client.ClientID == "" {
		return "", nil, errNotConfigured(provider, "oauth "+provider)
	}
	refreshToken := cur.str("refresh_token")
	if refreshToken == "" {
		return "", nil, fmt.Errorf("%w: identity has no refresh token", ErrInvalid)
	}
	cfg := oauth2.Config{
		ClientID:     client.ClientID,
		ClientSecret: client.ClientSecret,
		Endpoint:     oauth2.Endpoint{TokenURL: m.tokenURL(t, client), AuthStyle: oauth2.AuthStyleInParams},
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, m.cfg.HTTPClient)
	tok, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		return "", nil, oauthError(provider, err)
	}
	set := map[string]any{"expires": m.expiresInTime(tok.Expiry).Unix()}
	if tok.RefreshToken != "" {
		set["refresh_token"] = tok.RefreshToken
	}
	return tok.AccessToken, set, nil
}

func (m *Manager) expiresInTime(exp time.Time) time.Time {
	if exp.IsZero() {
		return m.cfg.Now().Add(2 * time.Hour)
	}
	return exp
}

// tokenURL is the configured endpoint, else the provider's: a self-hosted
// GitLab's own /oauth/token, gitlab.com's, or Microsoft Entra's for Azure
// DevOps.
func (m *Manager) tokenURL(t Target, client OAuthClient) string {
	if client.TokenURL != "" {
		return client.TokenURL
	}
	if t.Integration.Provider == GitLab {
		if base := metadataString(t.Integration.Metadata, "base_url"); base != "" {
			return strings.TrimRight(base, "/") + "/oauth/token"
		}
		return DefaultGitLabTokenURL
	}
	return DefaultVSTSTokenURL
}

func errNotConfigured(provider, what string) error {
	return fmt.Errorf("%w: %s token cannot be refreshed: %s not configured", ErrInvalid, provider, what)
}

// oauthError turns an x/oauth2 error into a RefreshError without the
// endpoint's response body.
func oauthError(provider string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := "grant refused"
		if re.ErrorCode != "" {
			msg = "grant refused: " + re.ErrorCode
		}
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		return &RefreshError{Provider: provider, Status: status, Err: errors.New(msg)}
	}
	return &RefreshError{Provider: provider, Err: scrubURLError(err)}
}
