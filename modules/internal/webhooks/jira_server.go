package webhooks

import (
	"context"
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidwall/gjson"
)

func init() { register("jira_server", parseJiraServer) }

var (
	jiraServerEvents    = new(jsonReader)
	jiraServerChangelog = jiraServerEvents.path("changelog")
	jiraServerIssueID   = jiraServerEvents.path("issue", "id")
)

type jiraServerEvent struct {
	HasChangelog bool // present and not null, whatever its type
	IssueID      flexID
}

func readJiraServerEvent(b []byte) (jiraServerEvent, error) {
	body, err := jiraServerEvents.parse(b)
	if err != nil {
		return jiraServerEvent{}, err
	}
	ev := jiraServerEvent{
		HasChangelog: body.member(jiraServerChangelog).Type != gjson.Null,
		IssueID:      body.id(jiraServerIssueID),
	}
	return ev, body.err()
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
		return rejected(ReasonNoRegion), nil
	}
	ev, err := readJiraServerEvent(req.Body)
	if err != nil || !ev.HasChangelog {
		return respond(http.StatusOK, "dropped"), nil
	}
	res := capture("jira_server", in, regions)
	res.DeliveryKey = first(req.Header, "X-Atlassian-Webhook-Identifier")
	if n, ok := ev.IssueID.int64(); ok {
		res.BucketKey, res.HasBucket = n, true
	}
	return res, nil
}
