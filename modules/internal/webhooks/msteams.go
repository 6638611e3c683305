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

// parseMSTeams captures Bot Framework activities. Installs, and
// activities that cannot name their integration on their own, are served
// by control; the region verifies the Bot Framework JWT.
//
// An activity names its integration by a card action's integrationId or by
// its team. One with only a tenant id (a command in a personal chat such
// as unlink, a member added to a personal chat) does not: it goes to
// control, where identity linking lives, as in Sentry's newest parser.
// Once an activity can name one, the lookup falls back from the card's
// integration to the team's and then to the tenant's, in that order.
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
	case act.IntegrationID == "" && act.TeamID == "":
		return passOn, nil
	}
	var in *directory.Integration
	if id, ok := act.IntegrationID.int64(); ok {
		in, err = env.integrationByID(ctx, "msteams", id)
	}
	for _, externalID := range []string{act.TeamID, act.TenantID} {
		if in != nil || err != nil {
			break
		}
		in, err = env.integrationByExternalID(ctx, "msteams", externalID)
	}
	return env.captureFor("msteams", in, err, rejected(ReasonNoRegion))
}
