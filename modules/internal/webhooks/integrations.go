package webhooks

import "sort"

// integrationProviders are the providers whose parsers find their
// integration in the directory (by external id, or by id for jira_server,
// gitea and MS Teams card actions). bitbucket, bitbucket_server and
// plugins are keyed by the organization in the path and read no
// integration.
var integrationProviders = map[string]bool{
	"cursor_origin":     true,
	"discord":           true,
	"gitea":             true,
	"github":            true,
	"github_enterprise": true,
	"gitlab":            true,
	"jira":              true,
	"jira_server":       true,
	"msteams":           true,
	"slack":             true,
	"slack_staging":     true,
	"vsts":              true,
}

// ReadsIntegrations reports whether a provider's parser looks its
// integration up: only then can a static integration of that provider
// ever be read.
func ReadsIntegrations(provider string) bool { return integrationProviders[provider] }

// IntegrationProviders lists the providers of ReadsIntegrations, sorted.
func IntegrationProviders() []string {
	out := make([]string, 0, len(integrationProviders))
	for p := range integrationProviders {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
