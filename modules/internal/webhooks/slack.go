package webhooks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/tidwall/gjson"
)

func init() { register("slack", parseSlack) }

// slackAllRegionsExempt are the action values answered by the first region
// only (link unfurls and notification settings); every other interactive
// action without a response_url goes to all regions (§3.4).
var slackAllRegionsExempt = map[string]bool{
	"link_clicked": true,
	"ignore":       true,
	"all_slack":    true,
}

// slackRequest holds the fields the Slack parser needs from any of the
// three body shapes (JSON event, form command, form payload=<json>).
type slackRequest struct {
	Type        string
	Challenge   string
	TeamID      string
	EventID     string
	ResponseURL string
	Team        struct{ ID string }
	Actions     []slackAction
}

type slackAction struct{ ActionID, Name, Value string }

func (s *slackRequest) teamID() string {
	if s.TeamID != "" {
		return s.TeamID
	}
	return s.Team.ID
}

var (
	slackType         = pathOf("type")
	slackChallenge    = pathOf("challenge")
	slackTeamID       = pathOf("team_id")
	slackEventID      = pathOf("event_id")
	slackResponseURL  = pathOf("response_url")
	slackTeamObjectID = pathOf("team", "id")
	slackActions      = pathOf("actions")
	slackActionID     = pathOf("action_id").path
	slackActionName   = pathOf("name").path
	slackActionValue  = pathOf("value").path
)

// readSlackJSON reads an Events API body or an interactive payload.
func readSlackJSON(b []byte) (slackRequest, error) {
	body, err := parseObject(b)
	if err != nil {
		return slackRequest{}, err
	}
	sr := slackRequest{
		Type:        body.str(slackType),
		Challenge:   body.str(slackChallenge),
		TeamID:      body.str(slackTeamID),
		EventID:     body.str(slackEventID),
		ResponseURL: body.str(slackResponseURL),
	}
	sr.Team.ID = body.str(slackTeamObjectID)
	switch actions := body.member(slackActions); {
	case actions.IsArray():
		actions.ForEach(func(_, a gjson.Result) bool {
			if !objectOrNull(a) {
				body.bad = true
				return false
			}
			id, ok1 := stringOf(a.Get(slackActionID))
			name, ok2 := stringOf(a.Get(slackActionName))
			value, ok3 := stringOf(a.Get(slackActionValue))
			if !ok1 || !ok2 || !ok3 {
				body.bad = true
				return false
			}
			sr.Actions = append(sr.Actions, slackAction{ActionID: id, Name: name, Value: value})
			return true
		})
	case actions.Type != gjson.Null:
		body.bad = true
	}
	return sr, body.err()
}

func parseSlack(ctx context.Context, env *Env, req *Request) (Result, error) {
	sub, _ := subpath(req.Path, "slack")
	view := strings.TrimSuffix(sub, "/")
	switch view {
	case "event", "commands", "action", "options-load":
	default:
		// link-identity, unlink-identity and the team linking views
		// are served by control (which routes the team views itself).
		return passOn, nil
	}
	if env.SlackSigningSecret != nil && !verifySlack(env.SlackSigningSecret, req.Header, req.Body, env.now()) {
		return respond(http.StatusUnauthorized, "rejected"), nil
	}

	var sr slackRequest
	if view == "event" {
		var err error
		if sr, err = readSlackJSON(req.Body); err != nil {
			return respond(http.StatusBadRequest, "rejected"), nil
		}
		if sr.Type == "url_verification" {
			// Answered at the edge, after the signature check.
			body, _ := json.Marshal(map[string]string{"challenge": sr.Challenge})
			return respondJSON(http.StatusOK, body, "challenge"), nil
		}
	} else {
		form, err := url.ParseQuery(string(req.Body))
		if err != nil {
			return respond(http.StatusBadRequest, "rejected"), nil
		}
		if p := form.Get("payload"); p != "" {
			if sr, err = readSlackJSON([]byte(p)); err != nil {
				return respond(http.StatusBadRequest, "rejected"), nil
			}
		} else {
			sr.TeamID = form.Get("team_id")
			sr.ResponseURL = form.Get("response_url")
		}
	}

	in, err := env.integrationByExternalID(ctx, "slack", sr.teamID())
	if err != nil {
		return Result{}, err
	}
	if in == nil {
		return respond(http.StatusBadRequest, "rejected"), nil
	}
	regions := env.regionsOf(in)
	if len(regions) == 0 {
		// The workspace is no longer linked to any organization. Slack
		// retries anything but a 2xx, so acknowledge and drop.
		return respond(http.StatusAccepted, "dropped"), nil
	}

	if view == "event" {
		// Events API deliveries need nothing back but a 2xx: keep them
		// durably in the first region's mailbox.
		res := capture("slack", in, regions[:1])
		res.DeliveryKey = sr.EventID
		return res, nil
	}
	if sr.ResponseURL != "" {
		// Whatever the URL, the request is a callback job and is answered
		// the same way: whether the drainer may POST to it (https, a
		// callback host, a public address) is decided there, before the
		// region is called, and a refused one ends as a dead letter. The
		// edge's answer says nothing about the URL.
		res := capture("slack", in, regions[:1])
		res.Action = Callback
		res.Status = http.StatusOK
		res.CallbackURL = sr.ResponseURL
		res.Outcome = "callback"
		return res, nil
	}
	res := capture("slack", in, regions)
	res.Action = ProxyFirst
	if view == "action" && !slackExempt(&sr) {
		res.Action = ProxyAll
	}
	return res, nil
}

func slackExempt(sr *slackRequest) bool {
	for _, a := range sr.Actions {
		if slackAllRegionsExempt[a.ActionID] || slackAllRegionsExempt[a.Name] || slackAllRegionsExempt[a.Value] {
			return true
		}
	}
	return false
}
