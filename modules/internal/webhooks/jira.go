package webhooks

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
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
// external id is the Connect JWT's iss (the client key), the JWT must
// verify with that integration's shared secret, and its qsh claim must be
// this request's query string hash, so that a token captured from one
// request is refused on another (Sentry's verify_claims).
func parseJira(ctx context.Context, env *Env, req *Request) (Result, error) {
	sub, _ := subpath(req.Path, "jira")
	if strings.TrimSuffix(sub, "/") != "issue-updated" {
		return passOn, nil
	}
	token := jiraToken(req)
	if token == "" {
		return reject(http.StatusNotFound, ReasonNoRoutingKey), nil
	}
	var claims jwt.RegisteredClaims
	if _, _, err := jwtParser.ParseUnverified(token, &claims); err != nil || claims.Issuer == "" {
		return reject(http.StatusNotFound, ReasonBadSignature), nil
	}
	in, err := env.integrationByExternalID(ctx, "jira", claims.Issuer)
	if err != nil {
		return Result{}, err
	}
	if in == nil {
		return reject(http.StatusNotFound, ReasonUnknownIntegration), nil
	}
	secret := metadataString(in.Metadata, "shared_secret")
	if secret == "" || !verifyConnectJWT(token, []byte(secret), req) {
		return reject(http.StatusUnauthorized, ReasonBadSignature), nil
	}
	regions := env.regionsOf(in)
	switch {
	case len(regions) == 0:
		return rejected(ReasonNoRegion), nil
	case len(regions) > 1:
		// Sentry refuses to install Jira in organizations of two
		// regions; one that slipped through is a data error (§7 case 48).
		res := respond(http.StatusInternalServerError, "error")
		res.Reason = ReasonSeveralRegions
		return res, nil
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

// verifyConnectJWT is verifyHS256 for an Atlassian Connect token, whose
// qsh claim must also be the query string hash of req.
func verifyConnectJWT(token string, secret []byte, req *Request) bool {
	var claims struct {
		QSH string `json:"qsh"`
		jwt.RegisteredClaims
	}
	t, err := jwtParser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return secret, nil })
	if err != nil || !t.Valid || claims.QSH == "" {
		return false
	}
	want := connectQueryHash(req.Method, req.Path, req.RawQuery)
	return subtle.ConstantTimeCompare([]byte(claims.QSH), []byte(want)) == 1
}

// connectQueryHash is Atlassian Connect's query string hash: the hex
// SHA-256 of "METHOD&path&query", the path without trailing slashes, and
// the query its parameters but jwt, sorted by name, each as
// name=value (every value of a repeated name, sorted, joined by commas),
// names and values percent-encoded as RFC 3986 asks (all but letters,
// digits and -._~), joined by &.
func connectQueryHash(method, path, rawQuery string) string {
	var b strings.Builder
	b.WriteString(strings.ToUpper(method))
	b.WriteByte('&')
	b.WriteString(strings.TrimRight(path, "/"))
	b.WriteByte('&')
	// Pairs Go cannot parse are left out, as they are of the jwt
	// parameter's lookup; a hash over them would not match anyway.
	q, _ := url.ParseQuery(rawQuery)
	delete(q, "jwt")
	for i, name := range slices.Sorted(maps.Keys(q)) {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(connectEscape(name))
		b.WriteByte('=')
		values := slices.Sorted(slices.Values(q[name]))
		for j, v := range values {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(connectEscape(v))
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

// connectEscape percent-encodes every byte but RFC 3986's unreserved
// characters, in upper-case hex (a space is %20, never +).
func connectEscape(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
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
