package webhooks

import (
	"context"
	"strings"
)

func init() { register("vsts", parseVSTS) }

var (
	vstsEvents         = new(jsonReader)
	vstsNotificationID = vstsEvents.path("id")
	vstsCollectionID   = vstsEvents.path("resourceContainers", "collection", "id")
)

type vstsEvent struct{ ID, CollectionID string }

func readVSTSEvent(b []byte) (vstsEvent, error) {
	body, err := vstsEvents.parse(b)
	if err != nil {
		return vstsEvent{}, err
	}
	ev := vstsEvent{
		ID:           body.str(vstsNotificationID),
		CollectionID: body.str(vstsCollectionID),
	}
	return ev, body.err()
}

// parseVSTS captures Azure DevOps work item hooks; the integration's
// external id is the collection (organization) id.
func parseVSTS(ctx context.Context, env *Env, req *Request) (Result, error) {
	sub, _ := subpath(req.Path, "vsts")
	if strings.TrimSuffix(sub, "/") != "issue-updated" {
		return passOn, nil
	}
	ev, err := readVSTSEvent(req.Body)
	if err != nil {
		return rejected(ReasonBadBody), nil
	}
	in, err := env.integrationByExternalID(ctx, "vsts", ev.CollectionID)
	res, err := env.captureFor("vsts", in, err, rejected(ReasonNoRegion))
	if err != nil || res.Action != Capture {
		return res, err
	}
	res.DeliveryKey = ev.ID
	return res, nil
}
