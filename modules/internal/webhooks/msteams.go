package webhooks

import (
	"context"
	"strings"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

func init() { register("msteams", parseMSTeams) }

var (
	msteamsActivities    = new(jsonReader)
	msteamsType          = msteamsActivities.path("type")
	msteamsIntegrationID = msteamsActivities.path("value", "payload", "integrationId")
	msteamsEventType     = msteamsActivities.path("channelData", "eventType")
	msteamsTeamID        = msteamsActivities.path("channelData", "team", "id")
	msteamsTenantID      = msteamsActivities.path("channelData", "tenant", "id")
)

// msteamsActivity holds the members of a Bot Framework activity that
// decide where it goes.
type msteamsActivity struct {
	Type, EventType, TeamID, TenantID string
	IntegrationID                     flexID
}

func readMSTeamsActivity(b []byte) (msteamsActivity, error) {
	body, err := msteamsActivities.parse(b)
	if err != nil {
		return msteamsActivity{}, err
	}
	act := msteamsActivity{
		Type:          body.str(msteamsType),
		EventType:     body.str(msteamsEventType),
		TeamID:        body.str(msteamsTeamID),
		TenantID:      body.str(msteamsTenantID),
		IntegrationID: body.id(msteamsIntegrationID),
	}
	return act, body.err()
}

// parseMSTeams captures Bot Framework activities. Installs (and activities
// whose integration cannot be inferred) are served by control; the region
// verifies the Bot Framework JWT.
func parseMSTeams(ctx context.Context, env *Env, req *Request) (Result, error) {
	sub, _ := subpath(req.Path, "msteams")
	if strings.TrimSuffix(sub, "/") != "webhook" {
		return passOn, nil
	}
	act, err := readMSTeamsActivity(req.Body)
	if err != nil {
		return passOn, nil
	}
	switch {
	case act.Type == "", act.Type == "installationUpdate":
		return passOn, nil
	case act.Type == "conversationUpdate" && act.EventType == "teamMemberAdded":
		// The bot being added to a team is a new installation.
		return passOn, nil
	}
	var in *directory.Integration
	switch {
	case act.IntegrationID != "":
		id, ok := act.IntegrationID.int64()
		if !ok {
			return rejected(), nil
		}
		in, err = env.integrationByID(ctx, "msteams", id)
	case act.TeamID != "":
		in, err = env.integrationByExternalID(ctx, "msteams", act.TeamID)
	case act.TenantID != "":
		in, err = env.integrationByExternalID(ctx, "msteams", act.TenantID)
	default:
		return passOn, nil
	}
	return env.captureFor("msteams", in, err, rejected())
}
