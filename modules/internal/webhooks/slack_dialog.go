package webhooks

import (
	"encoding/json"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// The resolve and archive buttons of an issue alert open a dialog, which
// the region opens with views.open and the interaction's trigger_id. A
// trigger_id is good for 3 seconds; through control, the mailbox and the
// drainer the region sees it too late (Slack's expired_trigger_id). So,
// as Sentry's control does behind its option
// send-slack-response-from-control-silo, the edge opens a "Loading..."
// modal at once with the integration's bot token, keyed by the action's
// action_ts (external_id), which the region, called later by the
// drainer, can look the view up by to replace it; the region's answer
// goes to the response_url as every callback's does.

// slackDialogTitles are the actions that open a dialog, by the action
// option Sentry reads (the first action's non-empty value), with the
// title of their loading modal.
var slackDialogTitles = map[string]string{
	"resolve_dialog": "Resolve Issue",
	"archive_dialog": "Archive Issue",
}

// slackLoadingText is the loading modal's only block.
const slackLoadingText = "Loading..."

var (
	slackDialogs        = new(jsonReader)
	slackDialogTrigger  = slackDialogs.path("trigger_id")
	slackDialogActions  = slackDialogs.path("actions")
	slackDialogMembers  = new(jsonReader)
	slackDialogValue    = slackDialogMembers.path("value")
	slackDialogActionTS = slackDialogMembers.path("action_ts")
)

// slackDialog is what a dialog action needs for its loading modal.
type slackDialog struct {
	Option    string // resolve_dialog or archive_dialog
	TriggerID string
	ActionTS  string
}

// loadingModalCall is the views.open call of an interactive payload that
// is a dialog action, nil for any other.
func loadingModalCall(in *directory.Integration, payload []byte) *SlackCall {
	d, ok := readSlackDialog(payload)
	if !ok {
		return nil
	}
	return &SlackCall{Method: "views.open", Integration: *in, Body: d.loadingModal(), Kind: "loading_modal"}
}

// readSlackDialog reads an interactive payload (already checked by
// readSlackJSON) for a dialog action. ok is false for every other
// payload, and for a dialog action whose loading modal cannot be opened:
// Sentry requires exactly one action, with an action_ts, and a
// trigger_id; without them it logs the error and opens nothing, and so
// does the edge (the region still gets the payload).
func readSlackDialog(payload []byte) (d slackDialog, ok bool) {
	body, err := slackDialogs.parse(payload)
	if err != nil {
		return d, false
	}
	actions := body.member(slackDialogActions)
	if !actions.IsArray() {
		return d, false
	}
	list := actions.Array()
	if len(list) != 1 || !list[0].IsObject() {
		return d, false
	}
	a := slackDialogMembers.read(list[0])
	d.Option = a.str(slackDialogValue)
	if _, dialog := slackDialogTitles[d.Option]; !dialog || a.bad {
		return d, false
	}
	d.TriggerID, d.ActionTS = body.str(slackDialogTrigger), a.str(slackDialogActionTS)
	return d, d.TriggerID != "" && d.ActionTS != "" && !body.bad
}

// slackText is a Block Kit text object.
type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type slackBlock struct {
	Type    string    `json:"type"`
	BlockID string    `json:"block_id"`
	Text    slackText `json:"text"`
}

type slackView struct {
	Type       string       `json:"type"`
	ExternalID string       `json:"external_id"`
	Title      slackText    `json:"title"`
	Blocks     []slackBlock `json:"blocks"`
}

// loadingModal is the views.open call of a dialog action: Sentry's
// loading modal, a section "Loading..." under the action's title, with
// the action_ts as external_id so the region can find and update it.
func (d slackDialog) loadingModal() []byte {
	b, _ := json.Marshal(struct {
		TriggerID string    `json:"trigger_id"`
		View      slackView `json:"view"`
	}{d.TriggerID, slackView{
		Type:       "modal",
		ExternalID: d.ActionTS,
		Title:      slackText{"plain_text", slackDialogTitles[d.Option]},
		Blocks:     []slackBlock{{Type: "section", BlockID: "loading_block", Text: slackText{"mrkdwn", slackLoadingText}}},
	}})
	return b
}
