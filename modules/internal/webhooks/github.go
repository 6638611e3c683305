package webhooks

import (
	"context"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

func init() {
	register("github", func(ctx context.Context, env *Env, req *Request) (Result, error) {
		return parseGitHub(ctx, env, req, "github", "")
	})
	register("github_enterprise", func(ctx context.Context, env *Env, req *Request) (Result, error) {
		host := first(req.Header, "X-Github-Enterprise-Host")
		if host == "" {
			host = "-" // checked after the path, so other views still pass on
		}
		return parseGitHub(ctx, env, req, "github_enterprise", host)
	})
}

// githubControlEvents are answered by the control silo: both change the
// integration itself (its installation, the repositories it may see).
var githubControlEvents = map[string]bool{
	"installation":              true,
	"installation_repositories": true,
}

// githubRegionEvents are the events the regions process (Sentry's
// CELL_PROCESSED_GITHUB_EVENTS); others are acknowledged and dropped.
// They are also the event types GitHub's mailbox names may end with.
var githubRegionEvents = map[string]bool{
	"check_run":                   true,
	"check_suite":                 true,
	"issues":                      true,
	"issue_comment":               true,
	"pull_request":                true,
	"pull_request_review":         true,
	"pull_request_review_comment": true,
	"pull_request_review_thread":  true,
	"push":                        true,
}

// githubConsumedActions are, for the two event types with by far the most
// deliveries, the actions some region consumer acts on (Sentry's
// CELL_PROCESSED_ACTIONS): check_run completed (pull request metrics),
// requested_action (preprod checks) and rerequested (Seer's code review);
// check_suite completed (pull request metrics). Most of their volume is
// check_run created and check_suite requested or rerequested, which
// nothing reads: those are dropped.
var githubConsumedActions = map[string]map[string]bool{
	"check_run":   {"completed": true, "requested_action": true, "rerequested": true},
	"check_suite": {"completed": true},
}

var (
	githubEvents         = new(jsonReader)
	githubInstallationID = githubEvents.path("installation", "id")
	githubRepositoryID   = githubEvents.path("repository", "id")
	githubAction         = githubEvents.path("action")
	// The check objects are read whole, and only for check events: a
	// member of any type there is no reason to refuse a body.
	githubCheckRun   = githubEvents.path("check_run")
	githubCheckSuite = githubEvents.path("check_suite")
)

type githubEvent struct {
	InstallationID, RepositoryID flexID
	// Action is the action when it is a JSON string, else "".
	Action string
	// CheckRun and CheckSuite alias the body: read them while it is.
	CheckRun, CheckSuite gjson.Result
}

func readGitHubEvent(b []byte) (githubEvent, error) {
	body, err := githubEvents.parse(b)
	if err != nil {
		return githubEvent{}, err
	}
	ev := githubEvent{
		InstallationID: body.id(githubInstallationID),
		RepositoryID:   body.id(githubRepositoryID),
		CheckRun:       body.member(githubCheckRun),
		CheckSuite:     body.member(githubCheckSuite),
	}
	if a := body.member(githubAction); a.Type == gjson.String {
		ev.Action = a.Str
	}
	return ev, body.err()
}

// parseGitHub serves github and github_enterprise. For the enterprise
// flavour host is the X-GitHub-Enterprise-Host value, and the external id
// is "<host>:<installation id>". The steps are Sentry's, in its order:
// control's events pass on; every other delivery must name an installation
// of an integration with organizations in a known region (else 400), and
// only then is an event no region processes dropped with a 202.
func parseGitHub(ctx context.Context, env *Env, req *Request, provider, host string) (Result, error) {
	segment := strings.ReplaceAll(provider, "_", "-")
	sub, _ := subpath(req.Path, segment)
	if strings.TrimSuffix(sub, "/") != "webhook" {
		return passOn, nil
	}
	// The edge check is for the github.com App's secret; GitHub
	// Enterprise installations each have their own, checked by the region.
	if provider == "github" && env.GitHubWebhookSecret != nil && !verifyGitHub(env.GitHubWebhookSecret, req.Header, req.Body) {
		return reject(http.StatusUnauthorized, ReasonBadSignature), nil
	}
	ev, err := readGitHubEvent(req.Body)
	if err != nil {
		return rejected(ReasonBadBody), nil
	}
	event := first(req.Header, "X-Github-Event")
	if githubControlEvents[event] {
		return passOn, nil
	}
	if !strings.Contains(first(req.Header, "Content-Type"), "application/json") {
		return rejected(ReasonBadBody), nil
	}
	if host == "-" || ev.InstallationID == "" {
		return rejected(ReasonNoRoutingKey), nil
	}
	externalID := string(ev.InstallationID)
	if host != "" {
		externalID = host + ":" + externalID
	}
	in, err := env.integrationByExternalID(ctx, provider, externalID)
	res, err := env.captureFor(provider, in, err, rejected(ReasonNoRegion))
	if err != nil || res.Action != Capture {
		return res, err
	}
	if githubDropped(env, event, &ev) {
		return respond(http.StatusAccepted, "dropped"), nil
	}
	res.DeliveryKey = first(req.Header, "X-Github-Delivery")
	// Always split, by repository and event type, whatever the volume:
	// one busy repository's pushes never hold up another's, nor its own
	// pull requests.
	if id, ok := ev.RepositoryID.int64(); ok {
		res.BucketKey, res.HasBucket = id, true
	}
	res.AlwaysBucket = true
	res.EventType = MailboxEventType(provider, event)
	return res, nil
}

// githubDropped reports whether a delivery of an integration is dropped:
// an event no region processes, a check action nothing consumes, or (when
// the option is on) a completed check whose pull requests are all based
// in other repositories. A missing X-GitHub-Event is not dropped: the
// region answers it 400, so GitHub reports the failed delivery.
func githubDropped(env *Env, event string, ev *githubEvent) bool {
	if event == "" {
		return false
	}
	if !githubRegionEvents[event] {
		return true
	}
	consumed, filtered := githubConsumedActions[event]
	if !filtered {
		return false
	}
	if !consumed[ev.Action] {
		return true
	}
	if !env.GitHubDropChecksWithoutOwnRepoPR || ev.Action != "completed" {
		return false
	}
	check := ev.CheckRun
	if event == "check_suite" {
		check = ev.CheckSuite
	}
	return !ownRepoPullRequest(check, ev.RepositoryID)
}

// ownRepoPullRequest reports whether a check object lists a pull request
// based in the delivery's own repository: an entry of pull_requests whose
// base.repo.id is the repository's id (compared as text, as Sentry
// compares them). GitHub lists every pull request whose head has the
// check's commit, those of forks' upstreams included, and the region's
// consumers skip those based elsewhere and those with no base repository.
// It is used to drop, so anything malformed reads as no such pull request
// (nothing could have been done with it either).
func ownRepoPullRequest(check gjson.Result, repositoryID flexID) bool {
	if repositoryID == "" {
		return false
	}
	prs := lastMember(check, "pull_requests")
	if !prs.IsArray() {
		return false
	}
	own := false
	prs.ForEach(func(_, pr gjson.Result) bool {
		base := idOf(lastMember(lastMember(lastMember(pr, "base"), "repo"), "id"))
		own = base != "" && base == repositoryID
		return !own
	})
	return own
}

// lastMember is the last member named key of an object (the one
// Python's json.loads keeps), or the zero Result when r is not an object
// or has none.
func lastMember(r gjson.Result, key string) gjson.Result {
	var out gjson.Result
	if !r.IsObject() {
		return out
	}
	r.ForEach(func(k, v gjson.Result) bool {
		if k.Str == key {
			out = v
		}
		return true
	})
	return out
}
