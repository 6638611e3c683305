package webhooks

import "testing"

// Every provider said to read integrations has a parser.
func TestIntegrationProvidersAreRegistered(t *testing.T) {
	for _, p := range IntegrationProviders() {
		if registry[p] == nil {
			t.Errorf("%s reads integrations but has no parser", p)
		}
	}
}
