package webhooks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/querydict"
)

// Sentry's staging Slack app is the same parser under its own provider
// name (slack_staging: /extensions/slack-staging/…), with its own
// integrations and signing secret.
func init() {
	register("slack", func(ctx context.Context, env *Env, req *Request) (Result, error) {
		return parseSlack(ctx, env, req, "slack", env.SlackSigningSecret)
	})
	register("slack_staging", func(ctx context.Context, env *Env, req *Request) (Result, error) {
		return parseSlack(ctx, env, req, "slack_staging", env.SlackStagingSigningSecret)
	})
}

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
	slackRequests     = new(jsonReader)
	slackType         = slackRequests.path("type")
	slackChallenge    = slackRequests.path("challenge")
	slackTeamID       = slackRequests.path("team_id")
	slackEventID      = slackRequests.path("event_id")
	slackResponseURL  = slackRequests.path("response_url")
	slackTeamObjectID = slackRequests.path("team", "id")
	slackActions      = slackRequests.path("actions")

	slackActionMembers = new(jsonReader)
	slackActionID      = slackActionMembers.path("action_id")
	slackActionName    = slackActionMembers.path("name")
	slackActionValue   = slackActionMembers.path("value")
)

// readSlackJSON reads an Events API body or an interactive payload.
func readSlackJSON(b []byte) (slackRequest, error) {
	body, err := slackRequests.parse(b)
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
			action := slackActionMembers.read(a)
			act := slackAction{ActionID: action.str(slackActionID), Name: action.str(slackActionName), Value: action.str(slackActionValue)}
			if action.bad {
				body.bad = true
				return false
			}
			sr.Actions = append(sr.Actions, act)
			return true
		})
	case actions.Type != gjson.Null:
		body.bad = true
	}
	return sr, body.err()
}

// parseSlack serves the Slack app of provider, whose requests are signed
// with secret (nil: not checked at the edge).
func parseSlack(ctx context.Context, env *Env, req *Request, provider string, secret []byte) (Result, error) {
	view := strings.TrimSuffix(viewOf(req.Path), "/")
	switch view {
	case "event", "commands", "action", "options-load":
	default:
		// link-identity, unlink-identity and the team linking views
		// are served by control (which routes the team views itself).
		return passOn, nil
	}
	if secret != nil && !verifySlack(secret, req.Header, req.Body, env.now()) {
		return reject(http.StatusUnauthorized, ReasonBadSignature), nil
	}

	var (
		sr      slackRequest
		payload []byte // an interactive payload's JSON
	)
	if view == "event" {
		var err error
		if sr, err = readSlackJSON(req.Body); err != nil {
			return rejected(ReasonBadBody), nil
		}
		if sr.Type == "url_verification" {
			// Answered at the edge, after the signature check.
			body, _ := json.Marshal(map[string]string{"challenge": sr.Challenge})
			return respondJSON(http.StatusOK, body, "challenge"), nil
		}
	} else {
		form, err := url.ParseQuery(string(req.Body))
		if err != nil {
			return rejected(ReasonBadBody), nil
		}
		if p := querydict.Get(form, "payload"); p != "" {
			if sr, err = readSlackJSON([]byte(p)); err != nil {
				return rejected(ReasonBadBody), nil
			}
			payload = []byte(p)
		} else {
			sr.TeamID = querydict.Get(form, "team_id")
			sr.ResponseURL = querydict.Get(form, "response_url")
		}
	}

	in, err := env.integrationByExternalID(ctx, provider, sr.teamID())
	// A workspace no longer linked to any organization: Slack retries
	// anything but a 2xx, so acknowledge and drop.
	res, err := env.captureFor(provider, in, err, respond(http.StatusAccepted, "dropped"))
	if err != nil || res.Action != Capture {
		return res, err
	}
	regions := res.Regions

	if view == "event" {
		return env.slackEvent(ctx, in, req.Body, sr.EventID, res)
	}
	if sr.ResponseURL != "" {
		// Whatever the URL, the request is a callback job and is answered
		// the same way: whether the drainer may POST to it (https, a
		// callback host, a public address) is decided there, before the
		// region is called, and a refused one ends as a dead letter. The
		// edge's answer says nothing about the URL.
		res.Regions = regions[:1]
		res.Action = Callback
		res.Status = http.StatusOK
		res.CallbackURL = sr.ResponseURL
		res.Outcome = "callback"
		if env.SlackLoadingModal && view == "action" {
			res.SlackCall = loadingModalCall(in, payload)
		}
		return res, nil
	}
	res.Action = ProxyFirst
	if view == "action" && !slackExempt(&sr) {
		res.Action = ProxyAll
	}
	return res, nil
}

// slackEvent stores an Events API delivery, which needs nothing back but
// a 2xx: durably in the first region's mailbox, or a Seer event in the
// region of its user's organization (res is the Capture result).
func (e *Env) slackEvent(ctx context.Context, in *directory.Integration, body []byte, eventID string, res Result) (Result, error) {
	res.Regions = res.Regions[:1]
	res.DeliveryKey = eventID
	if e.Identities == nil {
		return res, nil
	}
	ev, err := readSlackEvent(body)
	if err != nil {
		return rejected(ReasonBadBody), nil
	}
	if !ev.forSeer(in) {
		return res, nil
	}
	return e.routeSeer(ctx, in, &ev, res)
}

func slackExempt(sr *slackRequest) bool {
	for _, a := range sr.Actions {
		if slackAllRegionsExempt[a.ActionID] || slackAllRegionsExempt[a.Name] || slackAllRegionsExempt[a.Value] {
			return true
		}
	}
	return false
}
