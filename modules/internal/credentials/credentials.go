// Package credentials adds an integration's credentials to a call the
// credential proxy forwards, and refreshes expiring tokens (Sentry's
// authorize_request; docs/sentry_cred_proxy.md). Each refresh is
// single-flighted in the process and runs under the store's row lock, so
// only one refresh happens per expiry across every instance sharing the
// database: under the lock the current token is read again and, if another
// instance already refreshed it, used as it is. Nothing here imports Caddy,
// and no token or secret ever appears in an error or a log line.
package credentials

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// Providers, as spelled in sentry_integration.provider.
const (
	GitHub           = "github"
	GitHubEnterprise = "github_enterprise"
	GitLab           = "gitlab"
	VSTS             = "vsts"
	MSTeams          = "msteams"
	Slack            = "slack"
	SlackStaging     = "slack_staging" // Sentry's staging Slack app: bot calls only
	Discord          = "discord"
)

// Defaults of Config.
const (
	DefaultMSTeamsTokenURL = "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
	DefaultGitLabTokenURL  = "https://gitlab.com/oauth/token"
	DefaultVSTSTokenURL    = "https://login.microsoftonline.com/common/oauth2/v2.0/token"
	DefaultMargin          = time.Minute
	DefaultRefreshTimeout  = 30 * time.Second
)

// ErrUnsupported means the integration's provider has no proxy client
// (Sentry's invalid_client).
var ErrUnsupported = errors.New("credentials: provider not supported by the proxy")

// ErrInvalid means the integration cannot be given credentials: no token,
// no identity, no configured client, or the token endpoint refused the
// grant (Sentry's IdentityNotValid). The proxy answers 400.
var ErrInvalid = errors.New("credentials: not valid")

// RefreshError is a failed call to a token endpoint. It never carries a
// token, a secret or the endpoint's response body.
type RefreshError struct {
	Provider string
	// Status is the token endpoint's HTTP status, 0 when it was not
	// reached.
	Status int
	Err    error
}

func (e *RefreshError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s token refresh: token endpoint answered %d: %v", e.Provider, e.Status, e.Err)
	}
	return fmt.Sprintf("%s token refresh: %v", e.Provider, e.Err)
}

func (e *RefreshError) Unwrap() error { return e.Err }

// Is makes a refused grant (a 4xx from the token endpoint other than 429)
// match ErrInvalid: retrying cannot help, the credentials are bad.
func (e *RefreshError) Is(target error) bool {
	return target == ErrInvalid && e.Status >= 400 && e.Status < 500 && e.Status != http.StatusTooManyRequests
}

// Store is what credentials reads and writes: identities, read fresh
// (never from a cache), and the row-locked write-back of both token
// documents.
type Store interface {
	IntegrationByID(ctx context.Context, id int64) (directory.Integration, error)
	Identity(ctx context.Context, id int64) (directory.Identity, error)
	directory.Writer
}

// OAuthClient is an OAuth client registered with a provider.
type OAuthClient struct {
	ClientID     string
	ClientSecret string
	// TokenURL overrides the provider's token endpoint.
	TokenURL string
}

// Config configures a Manager.
type Config struct {
	// GitHubAppID and GitHubPrivateKey sign the GitHub App JWT. GitHub
	// Enterprise installations that carry their own app id and key in
	// metadata.installation use those instead.
	GitHubAppID      string
	GitHubPrivateKey *rsa.PrivateKey
	// MSTeams is the bot's client; TokenURL defaults to
	// DefaultMSTeamsTokenURL.
	MSTeams OAuthClient
	// OAuth holds the refresh_token clients by provider (gitlab, vsts).
	OAuth map[string]OAuthClient
	// DiscordBotToken is sent as "Authorization: Bot <token>".
	DiscordBotToken string
	// HTTPClient calls the token endpoints [http.DefaultClient].
	HTTPClient *http.Client
	// Margin is how long before expiry a token is refreshed [1m].
	Margin time.Duration
	// RefreshTimeout bounds one refresh, lock wait included [30s].
	RefreshTimeout time.Duration
	// CacheFor is how long a token read from the store is used from
	// memory before the store is read again [5s]; negative disables.
	CacheFor time.Duration
	// Now is the clock [time.Now].
	Now func() time.Time
	// Observe is told the outcome of every refresh attempt: "ok",
	// "reused" (another instance had refreshed already) or "error".
	Observe func(provider, outcome string)
}

// Manager authorises proxied calls. Safe for concurrent use.
type Manager struct {
	cfg    Config
	store  func() Store
	flight singleflight.Group
	tokens tokenCache
}

// New returns a Manager. store is called on each use, so the store may be
// opened after the Manager is built.
func New(cfg Config, store func() Store) *Manager {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Margin <= 0 {
		cfg.Margin = DefaultMargin
	}
	if cfg.RefreshTimeout <= 0 {
		cfg.RefreshTimeout = DefaultRefreshTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CacheFor == 0 {
		cfg.CacheFor = DefaultCacheFor
	}
	if cfg.MSTeams.TokenURL == "" {
		cfg.MSTeams.TokenURL = DefaultMSTeamsTokenURL
	}
	if cfg.Observe == nil {
		cfg.Observe = func(string, string) {}
	}
	return &Manager{cfg: cfg, store: store}
}

// Supports reports whether calls of this provider can be proxied.
func Supports(provider string) bool {
	switch provider {
	case GitHub, GitHubEnterprise, GitLab, VSTS, MSTeams, Slack, Discord:
		return true
	}
	return false
}

// Target is the call being authorised.
type Target struct {
	Integration    directory.Integration
	OrgIntegration directory.OrganizationIntegration
	// BaseURL is the verified X-Sentry-Subnet-Base-URL, without a
	// trailing slash.
	BaseURL string
}

// Grant is the credential put on one request. Pass it back to
// Reauthorize when the third party answers 401.
type Grant struct {
	token       string
	refreshable bool
}

// Authorize sets the credentials of t's integration on req, refreshing
// the token first when it is missing or about to expire.
func (m *Manager) Authorize(ctx context.Context, t Target, req *http.Request) (Grant, error) {
	return m.authorize(ctx, t, req, nil)
}

// Reauthorize handles a 401 the third party gave to a request sent with
// failed: it forces one refresh (unless another caller or instance
// already replaced that token) and sets the new credentials on req. ok is
// false when the credential cannot be refreshed; the 401 then stands.
func (m *Manager) Reauthorize(ctx context.Context, t Target, req *http.Request, failed Grant) (g Grant, ok bool, err error) {
	if !failed.refreshable {
		return Grant{}, false, nil
	}
	g, err = m.authorize(ctx, t, req, &failed)
	return g, err == nil, err
}

func (m *Manager) authorize(ctx context.Context, t Target, req *http.Request, failed *Grant) (Grant, error) {
	switch t.Integration.Provider {
	case GitHub, GitHubEnterprise:
		return m.github(ctx, t, req, failed)
	case MSTeams:
		return m.msteams(ctx, t, req, failed)
	case GitLab, VSTS:
		return m.oauthIdentity(ctx, t, req, failed)
	case Slack:
		return m.slackToken(ctx, t, req)
	case Discord:
		return m.discordToken(req)
	}
	return Grant{}, ErrUnsupported
}

func bearer(req *http.Request, token string) {
	req.Header.Set("Authorization", "Bearer "+token)
}

// metadataString reads a top-level string of a JSON document ("" when
// absent or not a string).
func metadataString(doc json.RawMessage, key string) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(doc, &m) != nil {
		return ""
	}
	var s string
	if json.Unmarshal(m[key], &s) != nil {
		return ""
	}
	return s
}
