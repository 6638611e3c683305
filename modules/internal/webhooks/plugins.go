package webhooks

import (
	"context"
	"strings"
)

func init() {
	register("plugins", parsePlugins)
	registerByOrganization("plugins")
}

// parsePlugins captures the legacy plugin webhooks
// /plugins/{github,bitbucket}/organizations/<id>/webhook/ into the
// "plugins" mailbox of the organization. An organization with no mapping
// is a 400; other plugin paths are served by control.
func parsePlugins(ctx context.Context, env *Env, req *Request) (Result, error) {
	rest, ok := strings.CutPrefix(req.Path, "/plugins/")
	if !ok {
		return passOn, nil
	}
	parts := splitPath(rest)
	if len(parts) != 4 || (parts[0] != "github" && parts[0] != "bitbucket") ||
		parts[1] != "organizations" || parts[3] != "webhook" {
		return passOn, nil
	}
	return captureForOrganization(ctx, env, req, "plugins", parts[2], false)
}
