package credentials

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var githubSlot = tokenSlot{provider: GitHub, expiryKey: "expires_at", expiryRequired: true}

// github authorises a GitHub or GitHub Enterprise call: the App JWT for
// the app endpoints (installation tokens are minted there), the
// installation token otherwise, and GitHub's Accept rules.
func (m *Manager) github(ctx context.Context, t Target, req *http.Request, failed *Grant) (Grant, error) {
	defer githubAccept(req)
	if path := req.URL.Path; strings.Contains(path, "/app/installations") || strings.Contains(path, "access_tokens") {
		jwt, err := m.githubJWT(t)
		if err != nil {
			return Grant{}, err
		}
		bearer(req, jwt)
		return Grant{}, nil
	}
	slot := githubSlot
	slot.provider = t.Integration.Provider
	tok, err := m.documentToken(ctx, kindIntegration, t.Integration.ID, slot, failed, func(ctx context.Context, _ document) (string, map[string]any, error) {
		return m.githubInstallationToken(ctx, t)
	})
	if err != nil {
		return Grant{}, err
	}
	bearer(req, tok)
	return Grant{token: tok, refreshable: true}, nil
}

func githubAccept(req *http.Request) {
	if req.Header.Get("Content-Type") == "application/raw; charset=utf-8" {
		req.Header.Set("Accept", "application/vnd.github.raw")
		return
	}
	req.Header.Set("Accept", "application/vnd.github+json")
}

// githubApp returns the app id and key that sign for this integration:
// a GitHub Enterprise installation's own, else the configured app.
func (m *Manager) githubApp(t Target) (string, *rsa.PrivateKey, error) {
	if t.Integration.Provider == GitHubEnterprise {
		var md struct {
			Installation struct {
				ID         json.RawMessage `json:"id"`
				PrivateKey string          `json:"private_key"`
			} `json:"installation"`
		}
		if json.Unmarshal(t.Integration.Metadata, &md) == nil && md.Installation.PrivateKey != "" {
			id := strings.Trim(string(md.Installation.ID), `"`)
			key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(md.Installation.PrivateKey))
			if err != nil || id == "" {
				return "", nil, fmt.Errorf("%w: github enterprise installation has no usable app id and private key", ErrInvalid)
			}
			return id, key, nil
		}
	}
	if m.cfg.GitHubAppID == "" || m.cfg.GitHubPrivateKey == nil {
		return "", nil, fmt.Errorf("%w: github_app_id and github_private_key are not configured", ErrInvalid)
	}
	return m.cfg.GitHubAppID, m.cfg.GitHubPrivateKey, nil
}

// githubJWT signs a GitHub App JWT: RS256, iss the app id, iat a minute in
// the past for clock drift, exp within GitHub's ten-minute limit.
func (m *Manager) githubJWT(t Target) (string, error) {
	id, key, err := m.githubApp(t)
	if err != nil {
		return "", err
	}
	now := m.cfg.Now()
	claims := jwt.RegisteredClaims{
		Issuer:    id,
		IssuedAt:  jwt.NewNumericDate(now.Add(-60 * time.Second)),
		ExpiresAt: jwt.NewNumericDate(now.Add(9 * time.Minute)),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("%w: signing the github app jwt failed", ErrInvalid)
	}
	return s, nil
}

// githubInstallationToken mints an installation token:
// POST {base}/app/installations/{external_id}/access_tokens.
func (m *Manager) githubInstallationToken(ctx context.Context, t Target) (string, map[string]any, error) {
	provider := t.Integration.Provider
	installation := githubInstallationID(t)
	if installation == "" {
		return "", nil, fmt.Errorf("%w: integration has no installation id", ErrInvalid)
	}
	jwt, err := m.githubJWT(t)
	if err != nil {
		return "", nil, err
	}
	endpoint := strings.TrimRight(t.BaseURL, "/") + "/app/installations/" + url.PathEscape(installation) + "/access_tokens"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, nil)
	if err != nil {
		return "", nil, &RefreshError{Provider: provider, Err: errors.New("bad token endpoint")}
	}
	bearer(req, jwt)
	req.Header.Set("Accept", "application/vnd.github+json")
	resp, err := m.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", nil, &RefreshError{Provider: provider, Err: scrubURLError(err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return "", nil, &RefreshError{Provider: provider, Status: resp.StatusCode, Err: errors.New("installation token not granted")}
	}
	var out struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expires_at"`
	}
	if json.Unmarshal(body, &out) != nil || out.Token == "" {
		return "", nil, &RefreshError{Provider: provider, Status: resp.StatusCode, Err: errors.New("token endpoint answer has no token")}
	}
	exp, ok := parseTimestamp(out.ExpiresAt)
	if !ok {
		exp = m.cfg.Now().Add(time.Hour)
	}
	return out.Token, map[string]any{"expires_at": naiveUTC(exp)}, nil
}

// githubInstallationID is where Sentry keeps the installation: the
// external id for GitHub; metadata.installation_id for GitHub Enterprise,
// whose external id is "<domain>:<installation id>".
func githubInstallationID(t Target) string {
	if t.Integration.Provider != GitHubEnterprise {
		return t.Integration.ExternalID
	}
	var md struct {
		InstallationID json.RawMessage `json:"installation_id"`
	}
	if json.Unmarshal(t.Integration.Metadata, &md) == nil {
		if id := strings.Trim(string(md.InstallationID), `"`); id != "" && id != "null" {
			return id
		}
	}
	if i := strings.LastIndexByte(t.Integration.ExternalID, ':'); i >= 0 {
		return t.Integration.ExternalID[i+1:]
	}
	return t.Integration.ExternalID
}

// scrubURLError keeps what went wrong with a token call but drops the
// URL, which may carry credentials in its query.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
