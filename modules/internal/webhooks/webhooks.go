// Package webhooks holds the provider parsers of Sentry's
// IntegrationControlMiddleware (§3.4 of the reference): given a raw request,
// each parser finds the integration and the regions of its organizations
// and decides what the edge does with it. Parsers never write anything; the
// Caddy handler turns a Result into a stored payload or an answer. Nothing
// here imports Caddy, so the parsers can be tested and fuzzed on their own.
package webhooks

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// Directory is the part of the directory the parsers read. Lookups return
// directory.ErrNotFound when nothing matches; any other error means the
// directory could not be read and is answered 503 by the handler.
type Directory interface {
	Organization(ctx context.Context, idOrSlug string) (directory.Organization, error)
	IntegrationByExternalID(ctx context.Context, provider, externalID string) (directory.Integration, error)
	IntegrationByID(ctx context.Context, id int64) (directory.Integration, error)
}

// Env is what parsers may consult besides the request.
type Env struct {
	Dir Directory
	// KnownRegion reports whether a region name is configured; regions
	// the directory names but the config does not know are ignored, as
	// Sentry's get_cell_by_name refuses them. nil accepts every name.
	KnownRegion func(name string) bool
	// SlackSigningSecret enables the edge check of X-Slack-Signature.
	SlackSigningSecret []byte
	// SlackStagingSigningSecret is the same for Sentry's staging Slack
	// app (/extensions/slack-staging/), which signs with its own secret.
	SlackStagingSigningSecret []byte
	// DiscordPublicKey enables the edge check of X-Signature-Ed25519 and
	// answering PINGs at the edge.
	DiscordPublicKey ed25519.PublicKey
	// GitHubWebhookSecret enables the edge check of X-Hub-Signature-256.
	GitHubWebhookSecret []byte
	// GitHubDropChecksWithoutOwnRepoPR drops completed check_run and
	// check_suite deliveries none of whose pull requests is based in the
	// delivery's own repository (Sentry's option
	// hybridcloud.webhookpayload.github_drop_checks_without_own_repo_pr).
	GitHubDropChecksWithoutOwnRepoPR bool
	// SlackLoadingModal opens a loading modal from the edge for the
	// resolve and archive dialog actions (Sentry's option
	// send-slack-response-from-control-silo): the Result of such an
	// action carries the views.open SlackCall.
	SlackLoadingModal bool
	// Identities, when set, routes Seer's Slack events to the region of
	// the organization of their user (slack_seer.go); nil stores them
	// for the workspace's first region, as every other event.
	Identities SlackIdentities
	// SlackDedupeSeerEvents keeps a Seer event's event_id as its
	// delivery key, so that Slack's retries of it are stored once
	// (Sentry's option slack.dedupe-seer-webhook-events).
	SlackDedupeSeerEvents bool
	// Now is the clock for signature windows; nil means time.Now.
	Now func() time.Time
}

func (e *Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// Request is the part of an HTTP request parsers see. Body is the raw,
// complete body; parsers must not modify it.
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
}

// Action says what the edge does with a request.
type Action int

const (
	// PassOn hands the request to the next handler: the control silo
	// application (Sentry's get_response_from_control_silo).
	PassOn Action = iota
	// Respond answers at once with Status, ContentType and Body, storing
	// nothing (challenges, pings, rejections, dropped events).
	Respond
	// Capture stores one payload per region of Regions, then answers 202
	// (get_response_from_webhookpayload).
	Capture
	// Callback stores one durable callback payload for the first region
	// with CallbackURL, then answers with Status/ContentType/Body (§3.6).
	Callback
	// ProxyFirst proxies synchronously to the first region
	// (get_response_from_first_cell).
	ProxyFirst
	// ProxyAll proxies synchronously to every region in parallel and
	// returns the first good answer (get_response_from_all_cells).
	ProxyAll
)

// Result is a parser's decision.
type Result struct {
	Action      Action
	Status      int
	ContentType string
	Body        []byte
	// Outcome names the decision for metrics and debug logs
	// ("challenge", "rejected", "dropped", ...); the handler fills in the
	// outcome of captures itself.
	Outcome string
	// Reason says why a webhook was refused (one of the Reason*
	// constants), for the operator: counted and logged by the handler.
	Reason string

	// Provider is the provider of the payload rows and the first part of
	// the mailbox name ("plugins" for legacy plugin webhooks).
	Provider string
	// Subject is the mailbox subject: the integration id, or the
	// organization id for providers keyed by organization.
	Subject string
	// IntegrationID is stored with each row; 0 stores NULL.
	IntegrationID int64
	// Regions are the target regions, sorted by name.
	Regions []string
	// BucketKey, when HasBucket, splits a busy integration's mailbox in
	// buckets of BucketKey % 100 (§3.3).
	BucketKey int64
	HasBucket bool
	// AlwaysBucket splits the mailbox by BucketKey whatever the
	// integration's volume (GitHub's), instead of past the hourly
	// threshold.
	AlwaysBucket bool
	// EventType ends the mailbox name when set: one of the provider's
	// MailboxEventType values, never a value read from the request that
	// is not on that list.
	EventType string
	// DeliveryKey is the provider's delivery id, for de-duplication.
	DeliveryKey string
	// CallbackURL is the response_url of a Callback.
	CallbackURL string
	// SlackCall, when set, is a Slack Web API call the handler makes
	// before it answers (a loading modal, a halt message).
	SlackCall *SlackCall
	// SeerHalt is why a Seer event was answered without being stored
	// (one of the Seer* halt reasons).
	SeerHalt string
}

// Common answers.
var (
	passOn = Result{Action: PassOn, Outcome: "control"}
)

func respond(status int, outcome string) Result {
	return Result{Action: Respond, Status: status, Outcome: outcome}
}

func respondJSON(status int, body []byte, outcome string) Result {
	return Result{Action: Respond, Status: status, ContentType: "application/json", Body: body, Outcome: outcome}
}

// Parser decides what to do with one provider's request. It returns an
// error only when the directory could not be read.
type Parser func(ctx context.Context, env *Env, req *Request) (Result, error)

var registry = map[string]Parser{}

// register adds a parser for a provider name as it appears in
// /extensions/<provider>/ with - replaced by _. Called from init.
func register(provider string, p Parser) {
	if _, dup := registry[provider]; dup {
		panic("webhooks: parser registered twice: " + provider)
	}
	registry[provider] = p
}

// Providers returns the registered provider names, sorted. Each one's
// parser stores webhooks (Capture or Callback) under that provider name,
// so these are the names that shed and skip_on_failure can act on
// (TestParsers checks it). The control-only providers
// are not among them.
func Providers() []string {
	out := make([]string, 0, len(registry))
	for p := range registry {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// byOrganization are the providers whose payloads are stored by
// organization, with no integration id (Bitbucket's webhook URLs name the
// organization; so do the legacy plugin ones).
var byOrganization = map[string]bool{}

func registerByOrganization(provider string) { byOrganization[provider] = true }

// ByOrganization reports whether provider's payloads carry no integration
// id, so that nothing can select one of its integrations.
func ByOrganization(provider string) bool { return byOrganization[provider] }

// CheckStored explains why a provider name, given in a configuration
// option that acts on stored webhooks, can never match one: nil for the
// names of Providers. The error lists the valid names.
func CheckStored(provider string) error {
	if _, ok := registry[provider]; ok {
		return nil
	}
	why := fmt.Sprintf("unknown provider %q", provider)
	if controlOnly[provider] {
		why = fmt.Sprintf("%s webhooks are served by the control silo and never stored", provider)
	}
	return fmt.Errorf("%s; the providers whose webhooks are stored are %s", why, strings.Join(Providers(), ", "))
}

// Route finds the parser for a path. ok is false for paths that are not
// webhook paths at all (the handler passes them on without reading the
// body). provider is "" for an unknown /extensions/ provider, which also
// passes on (Sentry captures an error and falls through to control).
func Route(path string) (provider string, p Parser, ok bool) {
	var rest string
	switch {
	case strings.HasPrefix(path, "/extensions/"):
		rest = path[len("/extensions/"):]
	case strings.HasPrefix(path, "/plugins/"):
		return "plugins", registry["plugins"], true
	default:
		return "", nil, false
	}
	// IntegrationClassification leaves pipeline views to control.
	if strings.HasSuffix(path, "/setup/") || strings.HasSuffix(path, "/link/") {
		return "", nil, false
	}
	name := rest
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		name = rest[:i]
	}
	if name == "" {
		return "", nil, false
	}
	name = strings.ReplaceAll(name, "-", "_")
	if controlOnly[name] {
		return name, nil, true
	}
	p, found := registry[name]
	if !found {
		return "", nil, true
	}
	return name, p, true
}

// Parse runs the parser of the request's path. A path that no parser owns
// is passed on.
func Parse(ctx context.Context, env *Env, req *Request) (provider string, res Result, err error) {
	provider, p, ok := Route(req.Path)
	if !ok || p == nil {
		return provider, passOn, nil
	}
	res, err = p(ctx, env, req)
	return provider, res, err
}

// subpath returns the path after /extensions/<segment>/, or "" when the
// path does not have that prefix.
func subpath(path, segment string) (string, bool) {
	prefix := "/extensions/" + segment + "/"
	if !strings.HasPrefix(path, prefix) {
		return "", false
	}
	return path[len(prefix):], true
}

// viewOf returns the path after /extensions/<provider segment>/, whatever
// the segment's spelling (slack-staging or slack_staging route alike), or
// "" for a path without one.
func viewOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/extensions/")
	if !ok {
		return ""
	}
	_, view, _ := strings.Cut(rest, "/")
	return view
}

// lookupErr sorts a directory error into "not found" (nil, false) and a
// real failure (err).
func lookupErr(err error) (notFound bool, failure error) {
	if err == nil {
		return false, nil
	}
	if errors.Is(err, directory.ErrNotFound) {
		return true, nil
	}
	return false, err
}

// regionsOf returns the integration's known regions, sorted by name.
func (e *Env) regionsOf(in *directory.Integration) []string {
	rs := in.Regions()
	if e.KnownRegion == nil {
		return rs
	}
	out := rs[:0:0]
	for _, r := range rs {
		if e.KnownRegion(r) {
			out = append(out, r)
		}
	}
	return out
}

func (e *Env) known(region string) bool {
	if region == "" {
		return false
	}
	return e.KnownRegion == nil || e.KnownRegion(region)
}

// integrationByExternalID looks an integration up and checks it is active.
func (e *Env) integrationByExternalID(ctx context.Context, provider, externalID string) (*directory.Integration, error) {
	if externalID == "" {
		return nil, nil
	}
	in, err := e.Dir.IntegrationByExternalID(ctx, provider, externalID)
	if nf, ferr := lookupErr(err); nf || ferr != nil {
		return nil, ferr
	}
	if in.Status != directory.StatusActive {
		return nil, nil
	}
	return &in, nil
}

func (e *Env) integrationByID(ctx context.Context, provider string, id int64) (*directory.Integration, error) {
	if id <= 0 {
		return nil, nil
	}
	in, err := e.Dir.IntegrationByID(ctx, id)
	if nf, ferr := lookupErr(err); nf || ferr != nil {
		return nil, ferr
	}
	if in.Status != directory.StatusActive || (provider != "" && in.Provider != provider) {
		return nil, nil
	}
	return &in, nil
}

// rejected is the empty 400 Sentry's parsers answer for a webhook whose
// integration, or its organizations' regions, cannot be found.
func rejected(reason string) Result { return reject(http.StatusBadRequest, reason) }

// Reasons a webhook is refused (Result.Reason). The answer stays what
// Sentry answers, often an empty 400, which tells an operator nothing; the
// handler counts and logs the reason. A bounded, stable set: it is a
// metric label.
const (
	ReasonBadSignature        = "bad_signature"        // a signature, token or JWT that does not verify, or a stale one
	ReasonBadBody             = "bad_body"             // not the JSON or form the provider sends, or the wrong content type
	ReasonNoRoutingKey        = "no_routing_key"       // no installation, team, token or id to find the integration by
	ReasonUnknownIntegration  = "unknown_integration"  // no active integration of that provider and key
	ReasonNoRegion            = "no_region"            // the integration's organizations are in no configured region
	ReasonUnknownOrganization = "unknown_organization" // the organization in the path has no mapping
	ReasonSeveralRegions      = "several_regions"      // Jira installed in organizations of two regions (a data error)
)

// reject answers status with an empty body and records why.
func reject(status int, reason string) Result {
	res := respond(status, "rejected")
	res.Reason = reason
	return res
}

// captureFor is the end every integration parser shares: the lookup's
// error is the handler's 503; no active integration is a 400; an
// integration none of whose organizations is in a known region is
// answered noRegions (a 400, except where the provider must get a 2xx);
// otherwise the Capture result for its regions. A caller that has more to
// set returns the result as it is unless its Action is Capture.
func (e *Env) captureFor(provider string, in *directory.Integration, err error, noRegions Result) (Result, error) {
	if err != nil {
		return Result{}, err
	}
	if in == nil {
		return rejected(ReasonUnknownIntegration), nil
	}
	regions := e.regionsOf(in)
	if len(regions) == 0 {
		return noRegions, nil
	}
	return capture(provider, in, regions), nil
}

// capture builds the Capture result for an integration's regions.
func capture(provider string, in *directory.Integration, regions []string) Result {
	return Result{
		Action:        Capture,
		Status:        http.StatusAccepted,
		Provider:      provider,
		Subject:       itoa(in.ID),
		IntegrationID: in.ID,
		Regions:       regions,
	}
}
