package webhooks

import (
	"context"
	"net/http"
	"strconv"
	"strings"
)

func init() {
	register("bitbucket", parseBitbucket)
	register("bitbucket_server", parseBitbucketServer)
	registerByOrganization("bitbucket")
	registerByOrganization("bitbucket_server")
}

// parseBitbucket captures /extensions/bitbucket/organizations/<id>/webhook/.
// The organization id in the path picks the region; there is no
// integration lookup and the rows carry no integration id.
func parseBitbucket(ctx context.Context, env *Env, req *Request) (Result, error) {
	sub, _ := subpath(req.Path, "bitbucket")
	parts := splitPath(sub)
	if len(parts) != 3 || parts[0] != "organizations" || parts[2] != "webhook" {
		return passOn, nil
	}
	return captureForOrganization(ctx, env, req, "bitbucket", parts[1], true)
}

// parseBitbucketServer captures
// /extensions/bitbucket-server/organizations/<id>/webhook/<integration id>/.
func parseBitbucketServer(ctx context.Context, env *Env, req *Request) (Result, error) {
	sub, _ := subpath(req.Path, "bitbucket-server")
	parts := splitPath(sub)
	if len(parts) != 4 || parts[0] != "organizations" || parts[2] != "webhook" || !digits(parts[3]) {
		return passOn, nil
	}
	return captureForOrganization(ctx, env, req, "bitbucket_server", parts[1], true)
}

// captureForOrganization stores the request in the mailbox of the
// organization named in the path. An unknown organization passes on when
// missingPassesOn (Bitbucket), else it is a 400 (legacy plugins).
func captureForOrganization(ctx context.Context, env *Env, req *Request, provider, orgID string, missingPassesOn bool) (Result, error) {
	if !digits(orgID) {
		return passOn, nil
	}
	org, err := env.Dir.Organization(ctx, orgID)
	if nf, ferr := lookupErr(err); ferr != nil {
		return Result{}, ferr
	} else if nf {
		if missingPassesOn {
			return passOn, nil
		}
		return rejected(ReasonUnknownOrganization), nil
	}
	if !env.known(org.Region) {
		return passOn, nil
	}
	return Result{
		Action:      Capture,
		Status:      http.StatusAccepted,
		Provider:    provider,
		Subject:     strconv.FormatInt(org.ID, 10),
		Regions:     []string{org.Region},
		DeliveryKey: deliveryHeader(req),
	}, nil
}

// deliveryHeader returns the delivery id that Bitbucket (X-Request-UUID)
// or GitHub (X-GitHub-Delivery, for the legacy plugin) sends.
func deliveryHeader(req *Request) string {
	if v := first(req.Header, "X-Request-Uuid"); v != "" {
		return v
	}
	return first(req.Header, "X-Github-Delivery")
}

// splitPath splits "a/b/c/" into [a b c]; a path with empty segments is
// returned as nil so it matches nothing.
func splitPath(p string) []string {
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return nil
	}
	parts := strings.Split(p, "/")
	for _, s := range parts {
		if s == "" {
			return nil
		}
	}
	return parts
}

func digits(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
