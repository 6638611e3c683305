// Package webhookcapture is the sentry_webhook_capture HTTP handler: it
// answers third-party webhooks at the edge of the control silo, storing
// each one durably in a mailbox per region before its 202. The provider
// logic lives in modules/internal/webhooks, naming and group commit in
// modules/internal/mailbox; this package adapts them to Caddy.
package webhookcapture

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/mailbox"
	"github.com/sentrysilo/caddy-silo/modules/internal/rejection"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
	"github.com/sentrysilo/caddy-silo/modules/silo"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// DefaultMaxBodySize is the largest webhook body accepted [10MB].
const DefaultMaxBodySize = 10 << 20

// Handler is the sentry_webhook_capture HTTP handler. It acts only on
// /extensions/... and /plugins/... paths and passes every other request,
// and every request in monolith mode, to the next handler.
type Handler struct {
	// MaxBodySize is the largest body accepted, in bytes; larger bodies
	// get 413 [10MB].
	MaxBodySize int64 `json:"max_body_size,omitempty"`
	// SlackSigningSecret verifies X-Slack-Signature at the edge; accepts
	// {env.*} and {file.*}.
	SlackSigningSecret string `json:"slack_signing_secret,omitempty"`
	// SlackStagingSigningSecret is the same for Sentry's staging Slack
	// app (/extensions/slack-staging/).
	SlackStagingSigningSecret string `json:"slack_staging_signing_secret,omitempty"`
	// DiscordPublicKey is the application's Ed25519 public key in hex;
	// it verifies X-Signature-Ed25519 and lets the edge answer PINGs.
	DiscordPublicKey string `json:"discord_public_key,omitempty"`
	// GitHubWebhookSecret turns on the edge check of X-Hub-Signature-256
	// [off: the region verifies].
	GitHubWebhookSecret string `json:"github_webhook_secret,omitempty"`
	// GitHubDropChecksWithoutOwnRepoPR answers 202 and stores nothing for
	// a completed check_run or check_suite none of whose pull requests is
	// based in its own repository (no region consumer acts on one) [off].
	GitHubDropChecksWithoutOwnRepoPR bool `json:"github_drop_checks_without_own_repo_pr,omitempty"`
	// SendSlackResponseFromControl opens a "Loading..." modal from the
	// edge, with the integration's bot token, for the resolve and
	// archive dialog actions, which the region would open too late
	// (Sentry's option send-slack-response-from-control-silo) [off].
	SendSlackResponseFromControl bool `json:"send_slack_response_from_control,omitempty"`
	// SlackDedupeSeerEvents stores one copy of a Seer event that Slack
	// sends again (by its event_id; Sentry's option
	// slack.dedupe-seer-webhook-events) [on].
	SlackDedupeSeerEvents *bool `json:"slack_dedupe_seer_events,omitempty"`
	// SlackAPIBase is Slack's Web API, for the calls the edge makes as
	// the app [https://slack.com/api].
	SlackAPIBase string `json:"slack_api_base,omitempty"`
	// Shed answers matching webhooks 429 with Retry-After: 60 and stores
	// nothing.
	Shed []ShedRule `json:"shed,omitempty"`
	// BucketThreshold is how many webhooks an integration may send per
	// hour before its mailboxes are split in buckets [3000].
	BucketThreshold int `json:"bucket_threshold,omitempty"`

	active   bool
	app      *silo.App
	env      *webhooks.Env
	batcher  *mailbox.Batcher
	bucketer *mailbox.Bucketer
	proxy    *regionProxy
	slack    *webhooks.SlackAPI
	logger   *zap.Logger
	// rejections counts and logs why a webhook was refused: the answer
	// is Sentry's (often an empty 400), which tells an operator nothing.
	rejections *rejection.Log
}

// ShedRule names what to shed: every webhook of a provider, or only one
// integration's.
type ShedRule struct {
	Provider      string `json:"provider"`
	IntegrationID int64  `json:"integration_id,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.sentry_webhook_capture",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision resolves secrets and sets defaults. It opens nothing and
// starts no goroutine: the batcher starts its flushers on first use.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	// Checked before the defaults hide a negative value.
	if err := h.Validate(); err != nil {
		return err
	}
	configured := h.options() // before the defaults fill them in
	if h.MaxBodySize <= 0 {
		h.MaxBodySize = DefaultMaxBodySize
	}
	if h.BucketThreshold <= 0 {
		h.BucketThreshold = mailbox.DefaultBucketThreshold
	}
	registerMetrics(ctx.GetMetricsRegistry())
	h.rejections = rejection.New(h.logger, "webhook rejected", rejectedTotal)

	app, err := silo.FromContext(ctx, "sentry_webhook_capture")
	if err != nil {
		return err
	}
	h.app = app
	h.active = app.Control()
	app.WarnMonolithOptions(h.logger, "sentry_webhook_capture", configured)
	for _, w := range shedWarnings(h.Shed) {
		h.logger.Warn(w)
	}

	env := &webhooks.Env{
		KnownRegion:                      func(name string) bool { _, ok := app.Region(name); return ok },
		GitHubDropChecksWithoutOwnRepoPR: h.GitHubDropChecksWithoutOwnRepoPR,
	}
	if err := h.signatureChecks(env); err != nil {
		return err
	}
	env.Dir = newDirectory(app.Directory())
	if err := h.provisionSlack(app, env); err != nil {
		return err
	}
	h.env = env
	h.bucketer = mailbox.NewBucketer(h.BucketThreshold, nil)
	h.proxy = newRegionProxy(func(name string) (*url.URL, bool) {
		r, ok := app.Region(name)
		if !ok || r == nil {
			return nil, false
		}
		return r.Address, r.Address != nil
	})
	h.batcher = newBatcher(app)
	if h.active {
		h.logger.Info("webhook capture on",
			zap.Int64("max_body_size", h.MaxBodySize),
			zap.Bool("slack_signature_check", env.SlackSigningSecret != nil),
			zap.Bool("slack_staging_signature_check", env.SlackStagingSigningSecret != nil),
			zap.Bool("discord_signature_check", env.DiscordPublicKey != nil),
			zap.Bool("github_signature_check", env.GitHubWebhookSecret != nil),
			zap.Bool("github_drop_checks_without_own_repo_pr", env.GitHubDropChecksWithoutOwnRepoPR),
			zap.Bool("send_slack_response_from_control", env.SlackLoadingModal),
			zap.Bool("slack_dedupe_seer_events", env.SlackDedupeSeerEvents),
			zap.Int("shed_rules", len(h.Shed)))
	}
	return nil
}

// signatureChecks resolves the secrets of the edge's signature checks
// into env. A secret that is configured must resolve: a missing variable
// would otherwise turn its check off without a word.
func (h *Handler) signatureChecks(env *webhooks.Env) error {
	secret := func(what, v string) ([]byte, error) {
		s, err := silo.ResolveSecret(what, v)
		if err != nil || s == "" {
			return nil, err
		}
		return []byte(s), nil
	}
	var err error
	if env.SlackSigningSecret, err = secret("sentry_webhook_capture slack_signing_secret", h.SlackSigningSecret); err != nil {
		return err
	}
	if env.SlackStagingSigningSecret, err = secret("sentry_webhook_capture slack_staging_signing_secret", h.SlackStagingSigningSecret); err != nil {
		return err
	}
	if env.GitHubWebhookSecret, err = secret("sentry_webhook_capture github_webhook_secret", h.GitHubWebhookSecret); err != nil {
		return err
	}
	discordKey, err := secret("sentry_webhook_capture discord_public_key", h.DiscordPublicKey)
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(string(discordKey)); s != "" {
		key, err := hex.DecodeString(s)
		if err != nil || len(key) != ed25519.PublicKeySize {
			// Never echo the value: it came from a placeholder.
			return fmt.Errorf("sentry_webhook_capture: discord_public_key must be %d bytes of hex", ed25519.PublicKeySize)
		}
		env.DiscordPublicKey = ed25519.PublicKey(key)
	}
	return nil
}

// newBatcher is the group commit into the app's store (nil without one:
// captures then answer 503). Few flushers with big batches beat many with
// small ones: each commit costs an fsync however many rows it carries
// (measured: 2 flushers 9.0k/s, 4 flushers 6.9k/s on PostgreSQL), and
// SQLite has one writer.
func newBatcher(app *silo.App) *mailbox.Batcher {
	insert := app.Insert()
	if insert == nil {
		return nil
	}
	flushers := 2
	if app.Storage.Engine == silo.EngineSQLite {
		flushers = 1
	}
	return mailbox.NewBatcher(insert, mailbox.BatcherOptions{
		Flushers: flushers,
		OnCommit: func(mailboxes []string) { app.Wake(mailboxes...) },
	})
}

// Validate refuses what could never take effect: shed rules that match no
// stored webhook, and negative sizes (which would silently mean the
// default). The Caddyfile parser applies the same checks, with the line.
func (h *Handler) Validate() error {
	if h.MaxBodySize < 0 {
		return fmt.Errorf("sentry_webhook_capture: max_body_size %d must be positive", h.MaxBodySize)
	}
	if h.BucketThreshold < 0 {
		return fmt.Errorf("sentry_webhook_capture: bucket_threshold %d must be positive", h.BucketThreshold)
	}
	if h.SlackAPIBase != "" {
		if err := webhooks.CheckSlackAPIBase(h.SlackAPIBase); err != nil {
			return fmt.Errorf("sentry_webhook_capture: %w", err)
		}
	}
	for i, r := range h.Shed {
		if err := r.check(); err != nil {
			return fmt.Errorf("sentry_webhook_capture: %w", err)
		}
		if slices.Contains(h.Shed[:i], r) {
			return fmt.Errorf("sentry_webhook_capture: %s is given twice", r)
		}
	}
	return nil
}

// String is the rule as a Caddyfile line.
func (r ShedRule) String() string {
	if r.IntegrationID != 0 {
		return fmt.Sprintf("shed %s %d", r.Provider, r.IntegrationID)
	}
	return "shed " + r.Provider
}

// check says why a rule can never match a stored webhook: shed acts on
// webhooks about to be stored, so a provider that never stores any (a
// control-only one, a misspelt one) or an integration id on payloads that
// carry none would do nothing.
func (r ShedRule) check() error {
	if err := webhooks.CheckStored(r.Provider); err != nil {
		return fmt.Errorf("%s: %w", r, err)
	}
	if r.IntegrationID < 0 {
		return fmt.Errorf("%s: the integration id must be positive", r)
	}
	if r.IntegrationID > 0 && webhooks.ByOrganization(r.Provider) {
		return fmt.Errorf("%s: %s webhooks are stored by organization, with no integration id, so no integration of theirs can be shed; use `shed %s` to shed them all", r, r.Provider, r.Provider)
	}
	return nil
}

// shedWarnings names the rules that a provider-wide rule makes redundant.
// Not an error: an operator may shed a whole provider for a while and
// keep the narrower rule for afterwards.
func shedWarnings(rules []ShedRule) []string {
	var out []string
	for _, r := range rules {
		if r.IntegrationID != 0 && slices.Contains(rules, ShedRule{Provider: r.Provider}) {
			out = append(out, fmt.Sprintf("sentry_webhook_capture: %s does nothing while `shed %s` sheds every %[2]s webhook", r, r.Provider))
		}
	}
	return out
}

// options names the options that are set, for the monolith warning.
func (h *Handler) options() []string {
	var out []string
	for _, o := range []struct {
		name string
		set  bool
	}{
		{"max_body_size", h.MaxBodySize != 0},
		{"slack_signing_secret", h.SlackSigningSecret != ""},
		{"slack_staging_signing_secret", h.SlackStagingSigningSecret != ""},
		{"discord_public_key", h.DiscordPublicKey != ""},
		{"github_webhook_secret", h.GitHubWebhookSecret != ""},
		{"github_drop_checks_without_own_repo_pr", h.GitHubDropChecksWithoutOwnRepoPR},
		{"shed", len(h.Shed) > 0},
		{"bucket_threshold", h.BucketThreshold != 0},
		{"send_slack_response_from_control", h.SendSlackResponseFromControl},
		{"slack_dedupe_seer_events", h.SlackDedupeSeerEvents != nil},
		{"slack_api_base", h.SlackAPIBase != ""},
	} {
		if o.set {
			out = append(out, o.name)
		}
	}
	return out
}

// Cleanup lets idle batch flushers exit. Requests still running on this
// handler after a reload keep working: the batcher restarts a flusher for
// them and it exits once they are committed.
func (h *Handler) Cleanup() error {
	if h == nil {
		return nil
	}
	h.batcher.Close()
	return nil
}

// shed reports whether a webhook must be shed.
func (h *Handler) shed(provider string, integrationID int64) bool {
	for _, r := range h.Shed {
		if r.Provider == provider && (r.IntegrationID == 0 || r.IntegrationID == integrationID) {
			return true
		}
	}
	return false
}

var (
	_ caddy.Provisioner  = (*Handler)(nil)
	_ caddy.Validator    = (*Handler)(nil)
	_ caddy.CleanerUpper = (*Handler)(nil)
)
