package webhooks

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"

	"github.com/tidwall/gjson"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// Seer, Sentry's AI agent in Slack, answers mentions of the app
// (app_mention), the app's assistant threads (assistant_thread_started)
// and, when the workspace granted the assistant:write scope, direct
// messages. A workspace may be shared by organizations of several
// regions, and such an event belongs to the organization of the Slack
// user who wrote it, not to the workspace's first region. So, as Sentry's
// control does (route_slack_seer_event), the edge finds the Sentry user
// linked to the Slack user, picks one of the integration's organizations
// that user is a member of, and stores the event for that organization's
// region; when none can be picked it stores nothing and the user gets an
// ephemeral message saying why (Sentry's halt message).

// SlackIdentities is what Seer routing reads besides the directory: the
// identity links and memberships of Sentry's control tables, never
// cached (a user who just linked must be routed at once). Lookups return
// directory.ErrNotFound when nothing matches.
type SlackIdentities interface {
	// LinkedUser returns the Sentry user whose identity of the identity
	// provider (providerType, workspaceID) is the Slack user slackUserID.
	LinkedUser(ctx context.Context, providerType, workspaceID, slackUserID string) (userID int64, err error)
	// MemberOrganizations returns those of orgIDs the user is an
	// approved member of.
	MemberOrganizations(ctx context.Context, userID int64, orgIDs []int64) ([]int64, error)
}

// SlackAssistantScope is the scope that makes direct messages Seer's.
const SlackAssistantScope = "assistant:write"

// Halt reasons, Sentry's SeerSlackHaltReason values.
const (
	SeerIdentityNotLinked   = "identity_not_linked"
	SeerNoValidIntegration  = "no_valid_integration"
	SeerNoValidOrganization = "no_valid_organization"
)

// seerHaltText is what the user is told, by halt reason. Sentry answers
// an unlinked user with a button carrying a signed link URL that only its
// application can build; the edge points to the slash command that sends
// the same link.
var seerHaltText = map[string]string{
	SeerIdentityNotLinked:   "Seer needs to know who you are in Sentry first: link your Slack account with `/sentry link`, then ask again.",
	SeerNoValidIntegration:  "This Slack workspace is no longer connected to a Sentry organization, so Seer cannot answer here.",
	SeerNoValidOrganization: "None of the Sentry organizations connected to this workspace that you are a member of can use Seer here.",
}

var (
	slackEvents          = new(jsonReader)
	slackEventType       = slackEvents.path("event", "type")
	slackEventUser       = slackEvents.path("event", "user")
	slackEventChannel    = slackEvents.path("event", "channel")
	slackEventThread     = slackEvents.path("event", "thread_ts")
	slackEventText       = slackEvents.path("event", "text")
	slackAssistantUser   = slackEvents.path("event", "assistant_thread", "user_id")
	slackAssistantChan   = slackEvents.path("event", "assistant_thread", "channel_id")
	slackAssistantThread = slackEvents.path("event", "assistant_thread", "thread_ts")
)

// slackEvent is the inner event of an Events API delivery, as Seer reads
// it: an assistant thread names its user, channel and thread in
// assistant_thread, every other event at the top.
type slackEvent struct {
	Type, User, Channel, ThreadTS, Text string
}

// readSlackEvent reads the inner event of a body readSlackJSON accepted.
func readSlackEvent(body []byte) (slackEvent, error) {
	o, err := slackEvents.parse(body)
	if err != nil {
		return slackEvent{}, err
	}
	ev := slackEvent{Type: o.str(slackEventType), Text: o.str(slackEventText)}
	if ev.Type == "assistant_thread_started" {
		ev.User, ev.Channel, ev.ThreadTS = o.str(slackAssistantUser), o.str(slackAssistantChan), o.str(slackAssistantThread)
	} else {
		ev.User, ev.Channel, ev.ThreadTS = o.str(slackEventUser), o.str(slackEventChannel), o.str(slackEventThread)
	}
	return ev, o.err()
}

// forSeer reports whether the event is Seer's (Sentry's
// is_seer_agent_request).
func (ev *slackEvent) forSeer(in *directory.Integration) bool {
	switch ev.Type {
	case "app_mention", "assistant_thread_started":
		return true
	case "message":
		return hasScope(in.Metadata, SlackAssistantScope)
	}
	return false
}

func hasScope(metadata json.RawMessage, scope string) bool {
	found := false
	gjson.GetBytes(metadata, "scopes").ForEach(func(_, s gjson.Result) bool {
		found = s.String() == scope
		return !found
	})
	return found
}

// routeSeer stores a Seer event for the region of the organization picked
// for its user (res is the event's Capture result), or answers 200 with a
// halt message when none can be picked.
func (e *Env) routeSeer(ctx context.Context, in *directory.Integration, ev *slackEvent, res Result) (Result, error) {
	org, halt, err := e.pickSeerOrganization(ctx, in, ev)
	if err != nil {
		return Result{}, err
	}
	if halt != "" {
		return seerHalt(in, ev, halt), nil
	}
	res.Regions = []string{org.Region}
	res.Outcome = "seer"
	if !e.SlackDedupeSeerEvents {
		res.DeliveryKey = ""
	}
	return res, nil
}

// pickSeerOrganization is Sentry's resolve_seer_organization as far as
// the edge can run it: a linked identity is required; the candidates are
// the integration's organizations (active, in a configured region) the
// user is an approved member of; one candidate is taken; of several, the
// first whose slug a Sentry link in the message names, else the first.
// Sentry also looks for such a link in the whole thread (a
// conversations.replies call per event) and at the user's preferred
// organization before taking the first; the edge does not, and the
// region, which runs the resolution again, has the last word.
func (e *Env) pickSeerOrganization(ctx context.Context, in *directory.Integration, ev *slackEvent) (org directory.Organization, halt string, err error) {
	if ev.User == "" {
		return org, SeerIdentityNotLinked, nil
	}
	userID, err := e.Identities.LinkedUser(ctx, in.Provider, in.ExternalID, ev.User)
	if nf, ferr := lookupErr(err); ferr != nil {
		return org, "", ferr
	} else if nf {
		return org, SeerIdentityNotLinked, nil
	}
	var ids []int64
	for _, oi := range in.Organizations {
		if !slices.Contains(ids, oi.OrganizationID) {
			ids = append(ids, oi.OrganizationID)
		}
	}
	if len(ids) == 0 {
		return org, SeerNoValidIntegration, nil
	}
	members, err := e.Identities.MemberOrganizations(ctx, userID, ids)
	if _, ferr := lookupErr(err); ferr != nil {
		return org, "", ferr
	}
	var candidates []directory.Organization
	for _, id := range ids {
		if !slices.Contains(members, id) {
			continue
		}
		o, err := e.Dir.Organization(ctx, itoa(id))
		if nf, ferr := lookupErr(err); ferr != nil {
			return org, "", ferr
		} else if nf || o.Status != directory.StatusActive || !e.known(o.Region) {
			continue
		}
		candidates = append(candidates, o)
	}
	switch len(candidates) {
	case 0:
		return org, SeerNoValidOrganization, nil
	case 1:
		return candidates[0], "", nil
	}
	for _, slug := range linkedSlugs(ev.Text) {
		for _, c := range candidates {
			if c.Slug == slug {
				return c, "", nil
			}
		}
	}
	return candidates[0], "", nil
}

// sentryLink finds the organization of a Sentry link in Slack's message
// markup: https://<slug>.sentry.io/... (an organization's own domain) or
// .../organizations/<slug>/....
var sentryLink = regexp.MustCompile(`https?://(?:[^/\s|>]+/organizations/([a-z0-9][a-z0-9_-]*)|([a-z0-9][a-z0-9-]*)\.[^/\s|>]+)/`)

func linkedSlugs(text string) []string {
	var out []string
	for _, m := range sentryLink.FindAllStringSubmatch(text, 8) {
		if m[1] != "" {
			out = append(out, m[1])
		}
		if m[2] != "" {
			out = append(out, m[2])
		}
	}
	return out
}

// seerHalt acknowledges a Seer event no organization can take, and tells
// the user why with an ephemeral message in the event's thread. Without a
// user or a channel there is no one to tell.
func seerHalt(in *directory.Integration, ev *slackEvent, reason string) Result {
	res := respond(http.StatusOK, "seer_halt")
	res.SeerHalt = reason
	res.IntegrationID = in.ID
	if ev.User == "" || ev.Channel == "" {
		return res
	}
	body, _ := json.Marshal(struct {
		Channel  string `json:"channel"`
		User     string `json:"user"`
		Text     string `json:"text"`
		ThreadTS string `json:"thread_ts,omitempty"`
	}{ev.Channel, ev.User, seerHaltText[reason], ev.ThreadTS})
	res.SlackCall = &SlackCall{Method: "chat.postEphemeral", Integration: *in, Body: body, Kind: "halt_message"}
	return res
}
