package webhooks

import (
	"encoding/json"
	"errors"
	"fmt"
)

// CallbackBody returns what the drainer POSTs to a response_url once the
// region has answered a callback payload (§3.6): Slack gets the region's
// JSON body as it is; Discord gets the "data" member of it (a follow-up
// message).
func CallbackBody(provider string, regionBody []byte) ([]byte, error) {
	switch provider {
	case "slack":
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
