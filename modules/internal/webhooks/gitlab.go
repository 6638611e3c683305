package webhooks

import (
	"context"
	"strings"

	"github.com/tidwall/gjson"
)

func init() { register("gitlab", parseGitLab) }

// gitlabRegionEvents are the object_kind values of the events the regions
// process (Push, Merge Request, Note and Issue Hooks: Sentry's
// CELL_PROCESSED_GITLAB_EVENTS), the event types GitLab's mailbox names may
// end with. Mailbox names use object_kind, not the X-Gitlab-Event header,
// whose values hold spaces.
var gitlabRegionEvents = map[string]bool{
	"push":          true,
	"merge_request": true,
	"note":          true,
	"issue":         true,
}

var (
	gitlabEvents     = new(jsonReader)
	gitlabProjectID  = gitlabEvents.path("project", "id")
	gitlabObjectKind = gitlabEvents.path("object_kind")
)

type gitlabEvent struct {
	ProjectID flexID
	// ObjectKind is object_kind when it is a JSON string, else "".
	ObjectKind string
}

func readGitLabEvent(b []byte) (gitlabEvent, error) {
	body, err := gitlabEvents.parse(b)
	if err != nil {
		return gitlabEvent{}, err
	}
	ev := gitlabEvent{ProjectID: body.id(gitlabProjectID)}
	if k := body.member(gitlabObjectKind); k.Type == gjson.String {
		ev.ObjectKind = k.Str
	}
	return ev, body.err()
}

// parseGitLab finds the integration from X-Gitlab-Token, which Sentry
// sets to "<instance>:<group path>:<secret>"; the external id is
// "<instance>:<group path>". The region checks the secret.
func parseGitLab(ctx context.Context, env *Env, req *Request) (Result, error) {
	sub, _ := subpath(req.Path, "gitlab")
	if strings.TrimSuffix(sub, "/") != "webhook" {
		return passOn, nil
	}
	token := first(req.Header, "X-Gitlab-Token")
	if token == "" {
		// "The customer needs to set a Secret Token in their webhook."
		return rejected(ReasonNoRoutingKey), nil
	}
	parts := strings.Split(token, ":")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return rejected(ReasonNoRoutingKey), nil
	}
	ev, err := readGitLabEvent(req.Body)
	if err != nil {
		return rejected(ReasonBadBody), nil
	}
	in, err := env.integrationByExternalID(ctx, "gitlab", parts[0]+":"+parts[1])
	res, err := env.captureFor("gitlab", in, err, rejected(ReasonNoRegion))
	if err != nil || res.Action != Capture {
		return res, err
	}
	res.DeliveryKey = first(req.Header, "X-Gitlab-Event-Uuid")
	// Split by project past the hourly threshold, as Sentry does (GitLab
	// is not one of its always-split providers); the event type always.
	if id, ok := ev.ProjectID.int64(); ok {
		res.BucketKey, res.HasBucket = id, true
	}
	res.EventType = MailboxEventType("gitlab", ev.ObjectKind)
	return res, nil
}
