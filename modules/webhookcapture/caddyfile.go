package webhookcapture

import (
	"slices"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("sentry_webhook_capture", parseCaddyfile)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	sentry_webhook_capture {
//		max_body_size <size>
//		slack_signing_secret <secret>
//		slack_staging_signing_secret <secret>
//		discord_public_key <hex>
//		github_webhook_secret <secret>
//		github_drop_checks_without_own_repo_pr
//		shed <provider> [<integration_id>]
//		bucket_threshold <n>
//		send_slack_response_from_control
//		slack_dedupe_seer_events on|off
//		slack_api_base <url>
//	}
//
// Secrets may be {env.NAME} or {file.PATH} placeholders; they are resolved
// when the config is provisioned, never at adapt time.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	// The options that hold one string (a secret or a key) as given.
	values := map[string]*string{
		"slack_signing_secret":         &h.SlackSigningSecret,
		"slack_staging_signing_secret": &h.SlackStagingSigningSecret,
		"discord_public_key":           &h.DiscordPublicKey,
		"github_webhook_secret":        &h.GitHubWebhookSecret,
		"slack_api_base":               &h.SlackAPIBase,
	}
	// The options that are on when named.
	flags := map[string]*bool{
		"github_drop_checks_without_own_repo_pr": &h.GitHubDropChecksWithoutOwnRepoPR,
		"send_slack_response_from_control":       &h.SendSlackResponseFromControl,
	}
	given := map[string]bool{}
	for d.NextBlock(0) {
		// Every option but shed holds one value: a second line would
		// silently replace the first.
		if opt := d.Val(); opt != "shed" {
			if given[opt] {
				return d.Errf("%s is given twice", opt)
			}
			given[opt] = true
		}
		if v, ok := values[d.Val()]; ok {
			if !d.AllArgs(v) {
				return d.ArgErr()
			}
			continue
		}
		if f, ok := flags[d.Val()]; ok {
			if d.NextArg() {
				return d.ArgErr()
			}
			*f = true
			continue
		}
		if err := h.unmarshalOption(d); err != nil {
			return err
		}
	}
	return nil
}

// unmarshalOption reads one option that takes arguments of its own.
func (h *Handler) unmarshalOption(d *caddyfile.Dispenser) error {
	switch d.Val() {
	case "max_body_size":
		var s string
		if !d.AllArgs(&s) {
			return d.ArgErr()
		}
		n, err := humanize.ParseBytes(s)
		if err != nil || n == 0 || n > 1<<40 {
			return d.Errf("max_body_size: invalid size %q", s)
		}
		h.MaxBodySize = int64(n)
	case "slack_dedupe_seer_events":
		var s string
		if !d.AllArgs(&s) || (s != "on" && s != "off") {
			return d.Errf("slack_dedupe_seer_events: want on or off")
		}
		on := s == "on"
		h.SlackDedupeSeerEvents = &on
	case "shed":
		args := d.RemainingArgs()
		if len(args) < 1 || len(args) > 2 {
			return d.ArgErr()
		}
		rule := ShedRule{Provider: args[0]}
		if len(args) == 2 {
			id, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil || id <= 0 {
				return d.Errf("shed: invalid integration id %q", args[1])
			}
			rule.IntegrationID = id
		}
		if err := rule.check(); err != nil {
			return d.Err(err.Error())
		}
		if slices.Contains(h.Shed, rule) {
			return d.Errf("%s is given twice", rule)
		}
		h.Shed = append(h.Shed, rule)
	case "bucket_threshold":
		var s string
		if !d.AllArgs(&s) {
			return d.ArgErr()
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return d.Errf("bucket_threshold: invalid count %q", s)
		}
		h.BucketThreshold = n
	default:
		return d.Errf("unrecognized subdirective %q", d.Val())
	}
	return nil
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
