package webhooks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sentrysilo/caddy-silo/modules/internal/querydict"
)

func init() { register("jira", parseJira) }

// jwtParser accepts only HMAC-signed tokens: Atlassian Connect and Sentry's
// Jira Server tokens are HS256.
var jwtParser = jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}))

// parseJira captures issue-updated webhooks; every other Jira view
// (descriptor, installed, uninstalled, ui-hook, configure, search,
// issue details) is served by control. The integration is the one whose
// external id is the Connect JWT's iss (the client key), and the JWT must
// verify with that integration's shared secret.
func parseJira(ctx context.Context, env *Env, req *Request) (Result, error) {
	sub, _ := subpath(req.Path, "jira")
	if strings.TrimSuffix(sub, "/") != "issue-updated" {
		return passOn, nil
	}
	token := jiraToken(req)
	if token == "" {
		return respond(http.StatusNotFound, "rejected"), nil
	}
	var claims jwt.RegisteredClaims
	if _, _, err := jwtParser.ParseUnverified(token, &claims); err != nil || claims.Issuer == "" {
		return respond(http.StatusNotFound, "rejected"), nil
	}
	in, err := env.integrationByExternalID(ctx, "jira", claims.Issuer)
	if err != nil {
		return Result{}, err
	}
	if in == nil {
		return respond(http.StatusNotFound, "rejected"), nil
	}
	secret := metadataString(in.Metadata, "shared_secret")
	if secret == "" || !verifyHS256(token, []byte(secret)) {
		return respond(http.StatusUnauthorized, "rejected"), nil
	}
	regions := env.regionsOf(in)
	switch {
	case len(regions) == 0:
		return rejected(), nil
	case len(regions) > 1:
		// Sentry refuses to install Jira in organizations of two
		// regions; one that slipped through is a data error (§7 case 48).
		return respond(http.StatusInternalServerError, "error"), nil
	}
	res := capture("jira", in, regions)
	res.DeliveryKey = first(req.Header, "X-Atlassian-Webhook-Identifier")
	return res, nil
}

// jiraToken returns the Connect JWT from "Authorization: JWT <token>" or
// the jwt query parameter.
func jiraToken(req *Request) string {
	if a := first(req.Header, "Authorization"); len(a) > 4 && strings.EqualFold(a[:4], "JWT ") {
		return strings.TrimSpace(a[4:])
	}
	if req.RawQuery != "" {
		// Pairs Go cannot parse (a ";" in a name) are dropped, not the
		// whole query: Django keeps the rest too.
		q, _ := url.ParseQuery(req.RawQuery)
		return querydict.Get(q, "jwt")
	}
	return ""
}

// verifyHS256 checks the signature and the time claims of an HS256 JWT.
func verifyHS256(token string, secret []byte) bool {
	t, err := jwtParser.Parse(token, func(*jwt.Token) (any, error) { return secret, nil })
	return err == nil && t.Valid
}

// metadataString reads a string member of an integration's metadata JSON.
func metadataString(meta json.RawMessage, key string) string {
	if len(meta) == 0 {
		return ""
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(meta, &m) != nil {
		return ""
	}
	var s string
	if json.Unmarshal(m[key], &s) != nil {
		return ""
	}
	return s
}
