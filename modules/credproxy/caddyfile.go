package credproxy

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("sentry_cred_proxy", parseCaddyfile)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	sentry_cred_proxy {
//		timeout <connect> <read>
//		allow_host <host[:port]...>
//		github_app_id <id>
//		github_private_key <pem>
//		msteams_client_id <id>
//		msteams_client_secret <secret>
//		msteams_token_url <url>
//		oauth <provider> <client_id> <client_secret> [<token_url>]
//		discord_bot_token <secret>
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		parse, ok := subdirectives[d.Val()]
		if !ok {
			return d.Errf("unrecognized sentry_cred_proxy subdirective %q", d.Val())
		}
		if err := parse(d, h); err != nil {
			return err
		}
	}
	// The pairs (app id and key, client id and secret) can only be
	// checked once the whole block is read.
	if err := h.check(); err != nil {
		return d.Errf("sentry_cred_proxy: %v", err)
	}
	return nil
}

// subdirectives read one line of the block each (the dispenser is on its
// name) into h.
var subdirectives = map[string]func(d *caddyfile.Dispenser, h *Handler) error{
	"timeout":    parseTimeout,
	"allow_host": parseAllowHost,
	"oauth":      parseOAuth,
	"github_app_id": func(d *caddyfile.Dispenser, h *Handler) error {
		return oneArg(d, &h.GitHubAppID)
	},
	"github_private_key": func(d *caddyfile.Dispenser, h *Handler) error {
		return oneArg(d, &h.GitHubPrivateKey)
	},
	"msteams_client_id": func(d *caddyfile.Dispenser, h *Handler) error {
		return oneArg(d, &h.MSTeamsClientID)
	},
	"msteams_client_secret": func(d *caddyfile.Dispenser, h *Handler) error {
		return oneArg(d, &h.MSTeamsClientSecret)
	},
	"msteams_token_url": func(d *caddyfile.Dispenser, h *Handler) error {
		return oneArg(d, &h.MSTeamsTokenURL)
	},
	"discord_bot_token": func(d *caddyfile.Dispenser, h *Handler) error {
		return oneArg(d, &h.DiscordBotToken)
	},
}

func parseTimeout(d *caddyfile.Dispenser, h *Handler) error {
	if h.Timeout != nil {
		return d.Err("timeout given twice")
	}
	args := d.RemainingArgs()
	if len(args) != 2 {
		return d.ArgErr()
	}
	connect, err := caddy.ParseDuration(args[0])
	if err != nil {
		return d.Errf("timeout: bad connect duration %q: %v", args[0], err)
	}
	read, err := caddy.ParseDuration(args[1])
	if err != nil {
		return d.Errf("timeout: bad read duration %q: %v", args[1], err)
	}
	if connect <= 0 || read <= 0 {
		return d.Err("timeout: durations must be positive")
	}
	h.Timeout = &Timeout{Connect: caddy.Duration(connect), Read: caddy.Duration(read)}
	return nil
}

func parseAllowHost(d *caddyfile.Dispenser, h *Handler) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	h.AllowHosts = append(h.AllowHosts, args...)
	if _, _, err := parseAllowList(h.AllowHosts); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

func parseOAuth(d *caddyfile.Dispenser, h *Handler) error {
	args := d.RemainingArgs()
	if len(args) != 3 && len(args) != 4 {
		return d.ArgErr()
	}
	c := OAuthClient{Provider: args[0], ClientID: args[1], ClientSecret: args[2]}
	if len(args) == 4 {
		c.TokenURL = args[3]
	}
	if err := c.check(); err != nil {
		return d.Err(err.Error())
	}
	for _, o := range h.OAuth {
		if o.Provider == c.Provider {
			return d.Errf("oauth %s is given twice", c.Provider)
		}
	}
	h.OAuth = append(h.OAuth, c)
	return nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) != 1 {
		return d.ArgErr()
	}
	if *dst != "" {
		return d.Errf("%s given twice", name)
	}
	*dst = args[0]
	return nil
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
