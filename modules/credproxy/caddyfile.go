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
		switch d.Val() {
		case "timeout":
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
		case "allow_host":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.AllowHosts = append(h.AllowHosts, args...)
			if _, _, err := parseAllowList(h.AllowHosts); err != nil {
				return d.Err(err.Error())
			}
		case "github_app_id":
			if err := oneArg(d, &h.GitHubAppID); err != nil {
				return err
			}
		case "github_private_key":
			if err := oneArg(d, &h.GitHubPrivateKey); err != nil {
				return err
			}
		case "msteams_client_id":
			if err := oneArg(d, &h.MSTeamsClientID); err != nil {
				return err
			}
		case "msteams_client_secret":
			if err := oneArg(d, &h.MSTeamsClientSecret); err != nil {
				return err
			}
		case "msteams_token_url":
			if err := oneArg(d, &h.MSTeamsTokenURL); err != nil {
				return err
			}
		case "oauth":
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
		case "discord_bot_token":
			if err := oneArg(d, &h.DiscordBotToken); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized sentry_cred_proxy subdirective %q", d.Val())
		}
	}
	// The pairs (app id and key, client id and secret) can only be
	// checked once the whole block is read.
	if err := h.check(); err != nil {
		return d.Errf("sentry_cred_proxy: %v", err)
	}
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
