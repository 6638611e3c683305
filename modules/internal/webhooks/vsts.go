package webhooks

import (
	"context"
	"net/http"
	"strings"
)

func init() { register("vsts", parseVSTS) }

type vstsEvent struct {
	ID                 string `json:"id"`
	ResourceContainers struct {
		Collection struct {
			ID string `json:"id"`
		} `json:"collection"`
	} `json:"resourceContainers"`
}

// parseVSTS captures Azure DevOps work item hooks; the integration's
// external id is the collection (organization) id.
func parseVSTS(ctx context.Context, env *Env, req *Request) (Result, error) {
	sub, _ := subpath(req.Path, "vsts")
	if strings.TrimSuffix(sub, "/") != "issue-updated" {
		return passOn, nil
	}
	var ev vstsEvent
	if err := decodeJSON(req.Body, &ev); err != nil {
		return respond(http.StatusBadRequest, "rejected"), nil
	}
	in, err := env.integrationByExternalID(ctx, "vsts", ev.ResourceContainers.Collection.ID)
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
	res := capture("vsts", in, regions)
	res.DeliveryKey = ev.ID
	return res, nil
}
