package webhooks

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

func init() { register("jira_server", parseJiraServer) }

type jiraServerEvent struct {
	Changelog json.RawMessage `json:"changelog"`
	Issue     struct {
		ID flexID `json:"id"`
	} `json:"issue"`
}

// parseJiraServer captures issue-updated/<token>/. The token is a JWT whose
// "id" claim is the integration id, signed with the integration's
// webhook_secret. Bad tokens and bodies without a changelog are answered
// 200 and dropped, as Sentry does, so Jira does not retry them.
func parseJiraServer(ctx context.Context, env *Env, req *Request) (Result, error) {
	sub, _ := subpath(req.Path, "jira-server")
	rest, ok := strings.CutPrefix(sub, "issue-updated/")
	if !ok {
		return passOn, nil
	}
	token := strings.TrimSuffix(rest, "/")
	if token == "" || strings.Contains(token, "/") {
		return passOn, nil
	}
	var claims struct {
		ID flexID `json:"id"`
		jwt.RegisteredClaims
	}
	if _, _, err := jwtParser.ParseUnverified(token, &claims); err != nil {
		return respond(http.StatusOK, "dropped"), nil
	}
	id, ok := claims.ID.int64()
	if !ok {
		return respond(http.StatusOK, "dropped"), nil
	}
	in, err := env.integrationByID(ctx, "jira_server", id)
	if err != nil {
		return Result{}, err
	}
	if in == nil {
		return respond(http.StatusOK, "dropped"), nil
	}
	secret := metadataString(in.Metadata, "webhook_secret")
	if secret == "" || !verifyHS256(token, []byte(secret)) {
		return respond(http.StatusOK, "dropped"), nil
	}
	regions := env.regionsOf(in)
	if len(regions) == 0 {
		return respond(http.StatusBadRequest, "rejected"), nil
	}
	var ev jiraServerEvent
	if decodeJSON(req.Body, &ev) != nil || len(ev.Changelog) == 0 || string(ev.Changelog) == "null" {
		return respond(http.StatusOK, "dropped"), nil
	}
	res := capture("jira_server", in, regions)
	res.DeliveryKey = first(req.Header, "X-Atlassian-Webhook-Identifier")
	if n, ok := ev.Issue.ID.int64(); ok {
		res.BucketKey, res.HasBucket = n, true
	}
	return res, nil
}
