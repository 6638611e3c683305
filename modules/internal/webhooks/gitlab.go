package webhooks

import (
	"context"
	"strings"
)

func init() { register("gitlab", parseGitLab) }

var (
	gitlabEvents    = new(jsonReader)
	gitlabProjectID = gitlabEvents.path("project", "id")
)

type gitlabEvent struct{ ProjectID flexID }

func readGitLabEvent(b []byte) (gitlabEvent, error) {
	body, err := gitlabEvents.parse(b)
	if err != nil {
		return gitlabEvent{}, err
	}
	ev := gitlabEvent{ProjectID: body.id(gitlabProjectID)}
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
		return rejected(), nil
	}
	parts := strings.Split(token, ":")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return rejected(), nil
	}
	ev, err := readGitLabEvent(req.Body)
	if err != nil {
		return rejected(), nil
	}
	in, err := env.integrationByExternalID(ctx, "gitlab", parts[0]+":"+parts[1])
	res, err := env.captureFor("gitlab", in, err, rejected())
	if err != nil || res.Action != Capture {
		return res, err
	}
	res.DeliveryKey = first(req.Header, "X-Gitlab-Event-Uuid")
	if id, ok := ev.ProjectID.int64(); ok {
		res.BucketKey, res.HasBucket = id, true
	}
	return res, nil
}
