package webhooks

import (
	"context"
	"net/http"
	"strings"
)

func init() { register("gitlab", parseGitLab) }

type gitlabEvent struct {
	Project struct {
		ID flexID `json:"id"`
	} `json:"project"`
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
		return respond(http.StatusBadRequest, "rejected"), nil
	}
	parts := strings.Split(token, ":")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return respond(http.StatusBadRequest, "rejected"), nil
	}
	var ev gitlabEvent
	if err := decodeJSON(req.Body, &ev); err != nil {
		return respond(http.StatusBadRequest, "rejected"), nil
	}
	in, err := env.integrationByExternalID(ctx, "gitlab", parts[0]+":"+parts[1])
	if err != nil {
		return Result{}, err
	}
	if in == nil {
		return respond(http.StatusBadRequest, "rejected"), nil
	}
	regions := env.regionsOf(in)
	if len(regions) == 0 {
		return respond(http.StatusBadRequest, "rejected"), nil
	}
	res := capture("gitlab", in, regions)
	res.DeliveryKey = first(req.Header, "X-Gitlab-Event-Uuid")
	if id, ok := ev.Project.ID.int64(); ok {
		res.BucketKey, res.HasBucket = id, true
	}
	return res, nil
}
