package webhooks

import (
	"context"
	"net/http"
	"strings"
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

// githubRegionEvents are the events the regions process; others are
// acknowledged and dropped.
var githubRegionEvents = map[string]bool{
	"check_run":                   true,
	"installation_repositories":   true,
	"issues":                      true,
	"issue_comment":               true,
	"pull_request":                true,
	"pull_request_review":         true,
	"pull_request_review_comment": true,
	"push":                        true,
}

var (
	githubEvents         = new(jsonReader)
	githubInstallationID = githubEvents.path("installation", "id")
	githubRepositoryID   = githubEvents.path("repository", "id")
)

type githubEvent struct{ InstallationID, RepositoryID flexID }

func readGitHubEvent(b []byte) (githubEvent, error) {
	body, err := githubEvents.parse(b)
	if err != nil {
		return githubEvent{}, err
	}
	ev := githubEvent{
		InstallationID: body.id(githubInstallationID),
		RepositoryID:   body.id(githubRepositoryID),
	}
	return ev, body.err()
}

// parseGitHub serves github and github_enterprise. For the enterprise
// flavour host is the X-GitHub-Enterprise-Host value, and the external id
// is "<host>:<installation id>".
func parseGitHub(ctx context.Context, env *Env, req *Request, provider, host string) (Result, error) {
	segment := strings.ReplaceAll(provider, "_", "-")
	sub, _ := subpath(req.Path, segment)
	if strings.TrimSuffix(sub, "/") != "webhook" {
		return passOn, nil
	}
	// The edge check is for the github.com App's secret; GitHub
	// Enterprise installations each have their own, checked by the region.
	if provider == "github" && env.GitHubWebhookSecret != nil && !verifyGitHub(env.GitHubWebhookSecret, req.Header, req.Body) {
		return respond(http.StatusUnauthorized, "rejected"), nil
	}
	if !strings.Contains(first(req.Header, "Content-Type"), "application/json") {
		return rejected(), nil
	}
	ev, err := readGitHubEvent(req.Body)
	if err != nil {
		return rejected(), nil
	}
	event, hasEvent := req.Header["X-Github-Event"]
	if hasEvent && len(event) > 0 {
		if event[0] == "installation" {
			return passOn, nil
		}
		if !githubRegionEvents[event[0]] {
			return respond(http.StatusAccepted, "dropped"), nil
		}
	}
	if host == "-" || ev.InstallationID == "" {
		return rejected(), nil
	}
	externalID := string(ev.InstallationID)
	if host != "" {
		externalID = host + ":" + externalID
	}
	in, err := env.integrationByExternalID(ctx, provider, externalID)
	res, err := env.captureFor(provider, in, err, rejected())
	if err != nil || res.Action != Capture {
		return res, err
	}
	res.DeliveryKey = first(req.Header, "X-Github-Delivery")
	if id, ok := ev.RepositoryID.int64(); ok {
		res.BucketKey, res.HasBucket = id, true
	}
	return res, nil
}
