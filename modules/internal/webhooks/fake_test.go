package webhooks

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// The fixture of §7: regions us and de; acme (1) in us, beta (2) in de.
var (
	acme = directory.OrganizationIntegration{OrganizationID: 1, Region: "us"}
	beta = directory.OrganizationIntegration{OrganizationID: 2, Region: "de"}
)

type fakeDir struct {
	orgs         map[int64]directory.Organization
	integrations []directory.Integration
	err          error // returned by every lookup when set
}

func newFakeDir() *fakeDir {
	meta := func(k, v string) json.RawMessage { b, _ := json.Marshal(map[string]string{k: v}); return b }
	return &fakeDir{
		orgs: map[int64]directory.Organization{
			1: {ID: 1, Slug: "acme", Region: "us"},
			2: {ID: 2, Slug: "beta", Region: "de"},
			3: {ID: 3, Slug: "gamma", Region: "mars"}, // region not configured
		},
		integrations: []directory.Integration{
			{ID: 10, Provider: "github", ExternalID: "555", Organizations: []directory.OrganizationIntegration{acme, beta}},
			{ID: 11, Provider: "github_enterprise", ExternalID: "ghe.example.com:77", Organizations: []directory.OrganizationIntegration{acme}},
			{ID: 12, Provider: "gitlab", ExternalID: "gitlab.example.com:grp", Organizations: []directory.OrganizationIntegration{acme}},
			{ID: 13, Provider: "slack", ExternalID: "T123", Organizations: []directory.OrganizationIntegration{beta, acme}},
			{ID: 14, Provider: "slack", ExternalID: "TGONE"},
			{ID: 15, Provider: "discord", ExternalID: "G1", Organizations: []directory.OrganizationIntegration{acme}},
			{ID: 16, Provider: "jira", ExternalID: "jira-client-key", Metadata: meta("shared_secret", "jsecret"), Organizations: []directory.OrganizationIntegration{acme}},
			{ID: 17, Provider: "jira", ExternalID: "jira-two", Metadata: meta("shared_secret", "jsecret"), Organizations: []directory.OrganizationIntegration{acme, beta}},
			{ID: 18, Provider: "jira_server", ExternalID: "js", Metadata: meta("webhook_secret", "jssecret"), Organizations: []directory.OrganizationIntegration{acme}},
			{ID: 19, Provider: "msteams", ExternalID: "team-1", Organizations: []directory.OrganizationIntegration{beta}},
			{ID: 20, Provider: "vsts", ExternalID: "coll-1", Organizations: []directory.OrganizationIntegration{acme}},
			{ID: 21, Provider: "github", ExternalID: "999", Status: 1, Organizations: []directory.OrganizationIntegration{acme}}, // disabled
			{ID: 22, Provider: "github", ExternalID: "556"},                                                                      // no organizations
			{ID: 23, Provider: "gitea", ExternalID: "gitea.example.com:1", Organizations: []directory.OrganizationIntegration{acme, beta}},
			{ID: 24, Provider: "cursor_origin", ExternalID: "i_01example", Organizations: []directory.OrganizationIntegration{acme, beta}},
			{ID: 25, Provider: "slack_staging", ExternalID: "TSTAGE", Organizations: []directory.OrganizationIntegration{beta}},
			{ID: 26, Provider: "msteams", ExternalID: "tenant-1", Organizations: []directory.OrganizationIntegration{beta}},                     // a tenant's integration
			{ID: 27, Provider: "gitea", ExternalID: "gitea.example.com:2", Status: 1, Organizations: []directory.OrganizationIntegration{acme}}, // disabled
		},
	}
}

func (f *fakeDir) Organization(_ context.Context, idOrSlug string) (directory.Organization, error) {
	if f.err != nil {
		return directory.Organization{}, f.err
	}
	id, err := strconv.ParseInt(idOrSlug, 10, 64)
	if err == nil {
		if o, ok := f.orgs[id]; ok {
			return o, nil
		}
	}
	for _, o := range f.orgs {
		if o.Slug == idOrSlug {
			return o, nil
		}
	}
	return directory.Organization{}, directory.ErrNotFound
}

func (f *fakeDir) IntegrationByExternalID(_ context.Context, provider, externalID string) (directory.Integration, error) {
	if f.err != nil {
		return directory.Integration{}, f.err
	}
	for _, in := range f.integrations {
		if in.Provider == provider && in.ExternalID == externalID {
			return in, nil
		}
	}
	return directory.Integration{}, directory.ErrNotFound
}

func (f *fakeDir) IntegrationByID(_ context.Context, id int64) (directory.Integration, error) {
	if f.err != nil {
		return directory.Integration{}, f.err
	}
	for _, in := range f.integrations {
		if in.ID == id {
			return in, nil
		}
	}
	return directory.Integration{}, directory.ErrNotFound
}

var errDown = errors.New("database is down")

var (
	testNow        = time.Unix(1_700_000_000, 0)
	slackSecret    = []byte("slack-signing-secret")
	stagingSecret  = []byte("slack-staging-signing-secret")
	githubSecret   = []byte("github-webhook-secret")
	discordPrivate = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
)

func testEnv(dir Directory) *Env {
	return &Env{
		Dir:                       dir,
		KnownRegion:               func(n string) bool { return n == "us" || n == "de" },
		SlackSigningSecret:        slackSecret,
		SlackStagingSigningSecret: stagingSecret,
		DiscordPublicKey:          discordPrivate.Public().(ed25519.PublicKey),
		Now:                       func() time.Time { return testNow },
	}
}
