package drain

import (
	"encoding/json"
	"errors"
	"fmt"
)

// callbackBody is what goes to a response_url once the region has answered
// a callback payload (§3.6): Slack gets the region's JSON body as it is,
// Discord the "data" member of it (a follow-up message). It mirrors
// webhooks.CallbackBody, which capture uses; kept here so the drainer does
// not depend on the capture package.
func callbackBody(provider string, regionBody []byte) ([]byte, error) {
	switch provider {
	case "discord":
		var v struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(regionBody, &v); err != nil {
			return nil, fmt.Errorf("discord callback: region answer is not JSON: %w", err)
		}
		if len(v.Data) == 0 || string(v.Data) == "null" {
			return nil, errors.New("discord callback: region answer has no data")
		}
		return v.Data, nil
	default:
		// Slack, and anything else that uses response_url: as is.
		return regionBody, nil
	}
}
