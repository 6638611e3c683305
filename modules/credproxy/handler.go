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
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sentrysilo/caddy-silo/modules/internal/credentials"
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
	v, err := ctx.App("sentry_silo")
	if err != nil {
		return fmt.Errorf("sentry_cred_proxy: loading the sentry_silo app: %v", err)
	}
	app, ok := v.(*silo.App)
	if !ok {
		return fmt.Errorf("sentry_cred_proxy: sentry_silo app has unexpected type %T", v)
	}
	h.app = app
	logger := ctx.Logger()

	connect, read := DefaultConnectTimeout, DefaultReadTimeout
	if h.Timeout != nil {
		if h.Timeout.Connect > 0 {
			connect = time.Duration(h.Timeout.Connect)
		}
		if h.Timeout.Read > 0 {
			read = time.Duration(h.Timeout.Read)
		}
	}
	allow, err := parseAllowList(h.AllowHosts)
	if err != nil {
		return fmt.Errorf("sentry_cred_proxy: %v", err)
	}

	repl := caddy.NewReplacer()
	resolve := func(s string) string { return strings.TrimSpace(repl.ReplaceKnown(s, "")) }
	cfg := credentials.Config{
		GitHubAppID:     resolve(h.GitHubAppID),
		MSTeams:         credentials.OAuthClient{ClientID: resolve(h.MSTeamsClientID), ClientSecret: resolve(h.MSTeamsClientSecret), TokenURL: resolve(h.MSTeamsTokenURL)},
		DiscordBotToken: resolve(h.DiscordBotToken),
		OAuth:           map[string]credentials.OAuthClient{},
	}
	if pem := resolve(h.GitHubPrivateKey); pem != "" {
		key, err := parsePrivateKey(pem)
		if err != nil {
			return fmt.Errorf("sentry_cred_proxy: github_private_key: %v", err)
		}
		cfg.GitHubPrivateKey = key
	}
	if (cfg.GitHubAppID == "") != (cfg.GitHubPrivateKey == nil) {
		return errors.New("sentry_cred_proxy: github_app_id and github_private_key must be set together (check that their placeholders resolve)")
	}
	for _, c := range h.OAuth {
		cfg.OAuth[c.Provider] = credentials.OAuthClient{ClientID: resolve(c.ClientID), ClientSecret: resolve(c.ClientSecret), TokenURL: resolve(c.TokenURL)}
	}

	h.transport = &http.Transport{
		DialContext:           (&guardedDialer{allow: allow, dialer: net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		// The body is relayed as it is: no transparent gzip.
		DisableCompression: true,
		// No environment proxy: a proxy would dial on our behalf and
		// defeat the address check.
		Proxy: nil,
	}
	client := &http.Client{
		Transport: h.transport,
		// Redirects go back to the caller, who decides (they may lead
		// off the integration's hosts).
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
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
		metrics:        m,
	}
	if app.Control() && app.Secret() == "" {
		logger.Warn("sentry_cred_proxy: no subnet_secret in sentry_silo: every proxy request will be rejected")
	}
	return nil
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

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if h.Timeout != nil && (h.Timeout.Connect < 0 || h.Timeout.Read < 0) {
		return errors.New("sentry_cred_proxy: timeouts must not be negative")
	}
	seen := map[string]bool{}
	for _, c := range h.OAuth {
		if c.Provider != credentials.GitLab && c.Provider != credentials.VSTS {
			return fmt.Errorf("sentry_cred_proxy: oauth provider %q: want gitlab or vsts", c.Provider)
		}
		if seen[c.Provider] {
			return fmt.Errorf("sentry_cred_proxy: oauth provider %q configured twice", c.Provider)
		}
		seen[c.Provider] = true
	}
	return nil
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
	if s := h.app.DirectoryDatabase(); s != nil {
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
