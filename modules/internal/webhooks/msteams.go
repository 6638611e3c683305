package webhooks

import (
	"context"
	"net/http"
	"strings"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

func init() { register("msteams", parseMSTeams) }

type msteamsActivity struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Action string `json:"action"`
	Value  struct {
		Payload struct {
			IntegrationID flexID `json:"integrationId"`
		} `json:"payload"`
	} `json:"value"`
	ChannelData struct {
		EventType string `json:"eventType"`
		Team      struct {
			ID string `json:"id"`
		} `json:"team"`
		Tenant struct {
			ID string `json:"id"`
		} `json:"tenant"`
	} `json:"channelData"`
}

// parseMSTeams captures Bot Framework activities. Installs (and activities
// whose integration cannot be inferred) are served by control; the region
// verifies the Bot Framework JWT.
func parseMSTeams(ctx context.Context, env *Env, req *Request) (Result, error) {
	sub, _ := subpath(req.Path, "msteams")
	if strings.TrimSuffix(sub, "/") != "webhook" {
		return passOn, nil
	}
	var act msteamsActivity
	if err := decodeJSON(req.Body, &act); err != nil {
		return passOn, nil
	}
	switch {
	case act.Type == "", act.Type == "installationUpdate":
		return passOn, nil
	case act.Type == "conversationUpdate" && act.ChannelData.EventType == "teamMemberAdded":
		// The bot being added to a team is a new installation.
		return passOn, nil
	}
	var in *directory.Integration
	var err error
	switch {
	case act.Value.Payload.IntegrationID != "":
		id, ok := act.Value.Payload.IntegrationID.int64()
		if !ok {
			return respond(http.StatusBadRequest, "rejected"), nil
		}
		in, err = env.integrationByID(ctx, "msteams", id)
	case act.ChannelData.Team.ID != "":
		in, err = env.integrationByExternalID(ctx, "msteams", act.ChannelData.Team.ID)
	case act.ChannelData.Tenant.ID != "":
		in, err = env.integrationByExternalID(ctx, "msteams", act.ChannelData.Tenant.ID)
	default:
		return passOn, nil
	}
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
	return capture("msteams", in, regions), nil
}
