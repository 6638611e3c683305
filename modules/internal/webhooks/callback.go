package webhooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// callbackHosts are the hosts a provider's response_url may name, on
// https's port 443, before the drainer's callback_hosts option adds any:
//   - Slack's response_url is on hooks.slack.com (/commands/, /actions/,
//     /app/), or hooks.slack-gov.com for GovSlack, which runs on its own
//     domain, slack-gov.com;
//   - Discord's follow-up URL is built by the parser on discord.com
//     (DiscordAPIBase); discordapp.com, Discord's former domain, still
//     serves the same API and older integrations name it.
//
// Slack sends response_url in the request body, so without
// slack_signing_secret anyone can name one: the list is what stops the
// drainer from POSTing a region's answer anywhere else.
var callbackHosts = map[string][]string{
	"slack":         {"hooks.slack.com", "hooks.slack-gov.com"},
	"slack_staging": {"hooks.slack.com", "hooks.slack-gov.com"}, // a Slack app like any other
	"discord":       {"discord.com", "discordapp.com"},
}

// CallbackHosts returns the hosts provider's response_url callbacks may
// POST to by default (lower case), nil for a provider without callbacks.
func CallbackHosts(provider string) []string { return slices.Clone(callbackHosts[provider]) }

// CallbackBody returns what the drainer POSTs to a response_url once the
// region has answered a callback payload (§3.6): Slack gets the region's
// JSON body as it is; Discord gets the "data" member of it (a follow-up
// message).
func CallbackBody(provider string, regionBody []byte) ([]byte, error) {
	switch provider {
	case "slack", "slack_staging":
		return regionBody, nil
	case "discord":
		var v struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(regionBody, &v); err != nil {
			return nil, fmt.Errorf("discord callback: region body is not JSON: %w", err)
		}
		if len(v.Data) == 0 || string(v.Data) == "null" {
			return nil, errors.New("discord callback: region body has no data")
		}
		return v.Data, nil
	}
	return nil, fmt.Errorf("callback: provider %q has no response_url callbacks", provider)
}
