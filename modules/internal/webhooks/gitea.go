package webhooks

import (
	"context"
	"strconv"
	"strings"
)

func init() { register("gitea", parseGitea) }

var (
	giteaEvents       = new(jsonReader)
	giteaRepositoryID = giteaEvents.path("repository", "id")
)

// parseGitea captures
// /extensions/gitea/organizations/<organization id>/webhook/<integration id>/.
// The hook URL names the organization, so its region comes straight from
// the organization's mapping: one region, not every region of the
// organizations sharing the integration (two organizations installed with
// one OAuth app share it, and each registers its own hook). An
// organization with no mapping, or in a region the config does not know,
// is served by control, as Sentry does; a missing integration is a 400.
// The integration is read only for the mailbox, which is split by
// repository past the hourly threshold. The region checks
// X-Gitea-Signature.
func parseGitea(ctx context.Context, env *Env, req *Request) (Result, error) {
	sub, _ := subpath(req.Path, "gitea")
	parts := splitPath(sub)
	if len(parts) != 4 || parts[0] != "organizations" || parts[2] != "webhook" {
		return passOn, nil
	}
	if !digits(parts[1]) {
		return passOn, nil
	}
	org, err := env.Dir.Organization(ctx, parts[1])
	if nf, ferr := lookupErr(err); ferr != nil {
		return Result{}, ferr
	} else if nf || !env.known(org.Region) {
		return passOn, nil
	}
	if !strings.Contains(first(req.Header, "Content-Type"), "application/json") || !digits(parts[3]) {
		return rejected(ReasonBadBody), nil
	}
	id, _ := strconv.ParseInt(parts[3], 10, 64)
	in, err := env.integrationByID(ctx, "gitea", id)
	if err != nil {
		return Result{}, err
	}
	if in == nil {
		return rejected(ReasonUnknownIntegration), nil
	}
	res := capture("gitea", in, []string{org.Region})
	res.DeliveryKey = first(req.Header, "X-Gitea-Delivery")
	// A body that is not a JSON object is still stored (the region
	// answers it); it only has no repository to split by.
	if body, err := giteaEvents.parse(req.Body); err == nil {
		if id, ok := body.id(giteaRepositoryID).int64(); ok {
			res.BucketKey, res.HasBucket = id, true
		}
	}
	return res, nil
}
