// Package credproxy is the sentry_cred_proxy HTTP handler: the control
// silo's integration credential proxy. Region silos send their outbound
// third-party calls to /api/0/internal/integration-proxy/ signed with the
// subnet secret; the handler verifies the signature, adds the
// integration's credentials (refreshing tokens, one refresher per expiry
// across instances) and forwards the call. Every other request goes to the
// next handler, and so does everything in monolith mode.
package credproxy

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sentrysilo/caddy-silo/modules/internal/credentials"
	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
	"github.com/sentrysilo/caddy-silo/modules/internal/rejection"
	"github.com/sentrysilo/caddy-silo/modules/silo"
	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the outbound call, Sentry's (connect, read) = (3, 30).
const (
	DefaultConnectTimeout = 3 * time.Second
	DefaultReadTimeout    = 30 * time.Second
)

// Handler is the sentry_cred_proxy HTTP handler. Fields that hold secrets
// accept {env.*} and {file.*} placeholders, resolved in Provision.
type Handler struct {
	// Timeout of the third-party call when X-Sentry-Subnet-Timeout does
	// not say [connect 3s, read 30s].
	Timeout *Timeout `json:"timeout,omitempty"`
	// AllowHosts are extra hosts ("host" or "host:port"; without a port,
	// any port) that X-Sentry-Subnet-Base-URL may name for any
	// integration, and that may resolve to loopback or link-local
	// addresses.
	AllowHosts []string `json:"allow_hosts,omitempty"`
	// GitHubAppID and GitHubPrivateKey (PEM) sign GitHub App JWTs.
	GitHubAppID      string `json:"github_app_id,omitempty"`
	GitHubPrivateKey string `json:"github_private_key,omitempty"`
	// MS Teams bot client [token URL: Microsoft's botframework.com tenant].
	MSTeamsClientID     string `json:"msteams_client_id,omitempty"`
	MSTeamsClientSecret string `json:"msteams_client_secret,omitempty"`
	MSTeamsTokenURL     string `json:"msteams_token_url,omitempty"`
	// OAuth are the refresh_token clients of gitlab and vsts.
	OAuth []OAuthClient `json:"oauth,omitempty"`
	// DiscordBotToken is sent as "Authorization: Bot <token>".
	DiscordBotToken string `json:"discord_bot_token,omitempty"`

	app       *silo.App
	proxy     *proxy
	transport *http.Transport
}

// Timeout is the (connect, read) pair of the third-party call.
type Timeout struct {
	Connect caddy.Duration `json:"connect,omitempty"`
	Read    caddy.Duration `json:"read,omitempty"`
}

// OAuthClient is one `oauth <provider> <client_id> <client_secret>
// [<token_url>]` line.
type OAuthClient struct {
	Provider     string `json:"provider"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	TokenURL     string `json:"token_url,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.sentry_cred_proxy",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision resolves secrets, parses the GitHub key and builds the
// shared outbound transport. It touches no database and no network.
func (h *Handler) Provision(ctx caddy.Context) error {
	app, err := silo.FromContext(ctx, "sentry_cred_proxy")
	if err != nil {
		return err
	}
	h.app = app
	logger := ctx.Logger()
	if err := h.Validate(); err != nil {
		return err
	}
	app.WarnMonolithOptions(logger, "sentry_cred_proxy", h.options())

	connect, read := h.timeouts()
	allow, warnings, err := parseAllowList(h.AllowHosts)
	if err != nil {
		return fmt.Errorf("sentry_cred_proxy: %v", err)
	}
	for _, w := range warnings {
		logger.Warn("sentry_cred_proxy: " + w)
	}
	cfg, err := h.credentialsConfig()
	if err != nil {
		return err
	}

	h.transport = httpx.NewTransport(httpx.TransportOptions{
		DialContext:           (&guardedDialer{allow: allow, dialer: net.Dialer{Timeout: connect, KeepAlive: httpx.KeepAlive}}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		// The body is relayed as it is: no transparent gzip.
		DisableCompression: true,
	})
	// Redirects go back to the caller, who decides (they may lead off the
	// integration's hosts).
	client := &http.Client{Transport: h.transport, CheckRedirect: httpx.NoRedirects}
	m := newMetrics(ctx.GetMetricsRegistry())
	cfg.HTTPClient = client
	cfg.Observe = m.refresh
	h.proxy = &proxy{
		secret:         app.Secret,
		lookups:        h.lookups,
		creds:          credentials.New(cfg, h.credentialStore),
		client:         client,
		allow:          allow,
		connectTimeout: connect,
		readTimeout:    read,
		maxBodySize:    DefaultMaxBodySize,
		logger:         logger,
		rejections:     rejection.New(logger, "integration proxy request rejected", m.rejected),
		metrics:        m,
	}
	if app.Control() && app.Secret() == "" {
		logger.Warn("sentry_cred_proxy: no subnet_secret in sentry_silo: every proxy request will be rejected")
	}
	return nil
}

// timeouts are the (connect, read) pair of a call whose request does not
// say, Sentry's (3s, 30s) unless configured.
func (h *Handler) timeouts() (connect, read time.Duration) {
	connect, read = DefaultConnectTimeout, DefaultReadTimeout
	if h.Timeout != nil {
		if h.Timeout.Connect > 0 {
			connect = time.Duration(h.Timeout.Connect)
		}
		if h.Timeout.Read > 0 {
			read = time.Duration(h.Timeout.Read)
		}
	}
	return connect, read
}

// credentialsConfig resolves the credentials' secrets. Every value may be
// a placeholder, and one that is configured must resolve: a missing
// variable would otherwise leave a credential silently unconfigured.
// Validate has checked the pairs, so a pair whose both halves resolve is
// complete.
func (h *Handler) credentialsConfig() (credentials.Config, error) {
	var resolveErr error
	resolve := func(what, v string) string {
		out, err := silo.ResolveSecret("sentry_cred_proxy "+what, v)
		if err != nil && resolveErr == nil {
			resolveErr = err
		}
		return strings.TrimSpace(out)
	}
	cfg := credentials.Config{
		GitHubAppID: resolve("github_app_id", h.GitHubAppID),
		MSTeams: credentials.OAuthClient{
			ClientID:     resolve("msteams_client_id", h.MSTeamsClientID),
			ClientSecret: resolve("msteams_client_secret", h.MSTeamsClientSecret),
			TokenURL:     resolve("msteams_token_url", h.MSTeamsTokenURL),
		},
		DiscordBotToken: resolve("discord_bot_token", h.DiscordBotToken),
		OAuth:           map[string]credentials.OAuthClient{},
	}
	pem := resolve("github_private_key", h.GitHubPrivateKey)
	for _, c := range h.OAuth {
		cfg.OAuth[c.Provider] = credentials.OAuthClient{
			ClientID:     resolve("oauth "+c.Provider+" client_id", c.ClientID),
			ClientSecret: resolve("oauth "+c.Provider+" client_secret", c.ClientSecret),
			TokenURL:     resolve("oauth "+c.Provider+" token_url", c.TokenURL),
		}
	}
	if resolveErr != nil {
		return cfg, resolveErr
	}
	if pem != "" {
		key, err := parsePrivateKey(pem)
		if err != nil {
			return cfg, fmt.Errorf("sentry_cred_proxy: github_private_key: %v", err)
		}
		cfg.GitHubPrivateKey = key
	}
	for what, u := range map[string]string{"msteams_token_url": cfg.MSTeams.TokenURL, "oauth gitlab token_url": cfg.OAuth[credentials.GitLab].TokenURL, "oauth vsts token_url": cfg.OAuth[credentials.VSTS].TokenURL} {
		if err := checkTokenURL(u); err != nil {
			return cfg, fmt.Errorf("sentry_cred_proxy: %s: %v", what, err)
		}
	}
	return cfg, nil
}

// parsePrivateKey reads an RSA key in PEM (PKCS#1 or PKCS#8). Keys passed
// through an environment variable often have "\n" escaped; those are
// accepted too. Errors never quote the key.
func parsePrivateKey(pem string) (*rsa.PrivateKey, error) {
	if !strings.Contains(pem, "\n") && strings.Contains(pem, `\n`) {
		pem = strings.ReplaceAll(pem, `\n`, "\n")
	}
	k, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(pem))
	if err != nil {
		return nil, errors.New("not an RSA private key in PEM form (PKCS#1 or PKCS#8)")
	}
	return k, nil
}

// Validate refuses what cannot work or would do nothing: an allow_host
// entry that matches no host, a credential missing its other half, an
// oauth client given twice. The Caddyfile parser applies the same checks.
func (h *Handler) Validate() error {
	if err := h.check(); err != nil {
		return fmt.Errorf("sentry_cred_proxy: %w", err)
	}
	return nil
}

func (h *Handler) check() error {
	if h.Timeout != nil && (h.Timeout.Connect < 0 || h.Timeout.Read < 0) {
		return errors.New("timeouts must not be negative")
	}
	if _, _, err := parseAllowList(h.AllowHosts); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, c := range h.OAuth {
		if err := c.check(); err != nil {
			return err
		}
		if seen[c.Provider] {
			return fmt.Errorf("oauth %s is given twice", c.Provider)
		}
		seen[c.Provider] = true
	}
	if (h.GitHubAppID == "") != (h.GitHubPrivateKey == "") {
		return errors.New("github_app_id and github_private_key must be set together: one without the other signs nothing")
	}
	if (h.MSTeamsClientID == "") != (h.MSTeamsClientSecret == "") {
		return errors.New("msteams_client_id and msteams_client_secret must be set together: one without the other fetches no token")
	}
	if h.MSTeamsTokenURL != "" && h.MSTeamsClientID == "" {
		return errors.New("msteams_token_url is set without msteams_client_id and msteams_client_secret, so it is never used")
	}
	if err := checkTokenURL(h.MSTeamsTokenURL); err != nil {
		return fmt.Errorf("msteams_token_url: %v", err)
	}
	return nil
}

func (c OAuthClient) check() error {
	if c.Provider != credentials.GitLab && c.Provider != credentials.VSTS {
		return fmt.Errorf("oauth provider %q: want gitlab or vsts", c.Provider)
	}
	if c.ClientID == "" || c.ClientSecret == "" {
		return fmt.Errorf("oauth %s needs a client_id and a client_secret", c.Provider)
	}
	if err := checkTokenURL(c.TokenURL); err != nil {
		return fmt.Errorf("oauth %s token_url: %v", c.Provider, err)
	}
	return nil
}

// checkTokenURL checks a token endpoint, unless it is empty (the default)
// or still a placeholder (checked again once resolved).
func checkTokenURL(s string) error {
	if s == "" || strings.Contains(s, "{") {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// options names the options that are set, for the monolith warning.
func (h *Handler) options() []string {
	var out []string
	for _, o := range []struct {
		name string
		set  bool
	}{
		{"timeout", h.Timeout != nil},
		{"allow_host", len(h.AllowHosts) > 0},
		{"github_app_id", h.GitHubAppID != ""},
		{"github_private_key", h.GitHubPrivateKey != ""},
		{"msteams_client_id", h.MSTeamsClientID != ""},
		{"msteams_client_secret", h.MSTeamsClientSecret != ""},
		{"msteams_token_url", h.MSTeamsTokenURL != ""},
		{"oauth", len(h.OAuth) > 0},
		{"discord_bot_token", h.DiscordBotToken != ""},
	} {
		if o.set {
			out = append(out, o.name)
		}
	}
	return out
}

// Cleanup closes idle outbound connections. Safe to call more than once
// and after a failed Provision.
func (h *Handler) Cleanup() error {
	if h.transport != nil {
		h.transport.CloseIdleConnections()
	}
	return nil
}

// ServeHTTP serves the proxy path in control mode and passes every other
// request on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !isProxyPath(r.URL.Path) || h.proxy == nil || !h.app.Control() {
		return next.ServeHTTP(w, r)
	}
	h.proxy.serve(w, r)
	return nil
}

func isProxyPath(p string) bool {
	return p == subnet.ProxyPath || p == subnet.ProxyPath[:len(subnet.ProxyPath)-1]
}

func (h *Handler) lookups() Lookups {
	if d := h.app.Directory(); d != nil {
		return d
	}
	return nil
}

// credentialStore is where tokens are read, locked and written back: the
// directory's database (Sentry's control database with directory_dsn),
// where Sentry's own code reads them, never a copy in the storage
// database.
func (h *Handler) credentialStore() credentials.Store {
	if s := h.app.CredentialStore(); s != nil {
		return s
	}
	return nil
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
