package webhookcapture

import (
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	cases := []struct {
		name    string
		input   string
		want    Handler
		wantErr bool
		errHas  string
	}{
		{name: "empty", input: `sentry_webhook_capture`, want: Handler{}},
		{name: "everything", input: `sentry_webhook_capture {
			max_body_size 2MB
			slack_signing_secret {env.SLACK_SECRET}
			discord_public_key {file./run/secrets/discord}
			github_webhook_secret s3cret
			shed github
			shed gitlab 42
			bucket_threshold 10
		}`, want: Handler{
			MaxBodySize:         2_000_000,
			SlackSigningSecret:  "{env.SLACK_SECRET}",
			DiscordPublicKey:    "{file./run/secrets/discord}",
			GitHubWebhookSecret: "s3cret",
			Shed:                []ShedRule{{Provider: "github"}, {Provider: "gitlab", IntegrationID: 42}},
			BucketThreshold:     10,
		}},
		{name: "unknown subdirective", input: "sentry_webhook_capture {\n nope 1\n}", wantErr: true},
		{name: "inline argument", input: "sentry_webhook_capture on", wantErr: true},
		{name: "bad size", input: "sentry_webhook_capture {\n max_body_size lots\n}", wantErr: true},
		{name: "missing secret", input: "sentry_webhook_capture {\n slack_signing_secret\n}", wantErr: true},
		{name: "shed without provider", input: "sentry_webhook_capture {\n shed\n}", wantErr: true},
		{name: "shed bad id", input: "sentry_webhook_capture {\n shed github x\n}", wantErr: true},
		{name: "bad threshold", input: "sentry_webhook_capture {\n bucket_threshold 0\n}", wantErr: true},
		{name: "shed a control-only provider", input: "sentry_webhook_capture {\n shed vercel\n}", wantErr: true,
			errHas: "shed vercel: vercel webhooks are served by the control silo and never stored; the providers whose webhooks are stored are bitbucket, bitbucket_server, cursor_origin, discord, gitea, github,"},
		{name: "shed an unknown provider", input: "sentry_webhook_capture {\n shed githb\n}", wantErr: true,
			errHas: `shed githb: unknown provider "githb"; the providers whose webhooks are stored are bitbucket,`},
		{name: "shed an integration of bitbucket", input: "sentry_webhook_capture {\n shed bitbucket 7\n}", wantErr: true,
			errHas: "shed bitbucket 7: bitbucket webhooks are stored by organization"},
		{name: "shed an integration of a plugin", input: "sentry_webhook_capture {\n shed plugins 7\n}", wantErr: true, errHas: "stored by organization"},
		{name: "shed all of bitbucket", input: "sentry_webhook_capture {\n shed bitbucket\n}", want: Handler{Shed: []ShedRule{{Provider: "bitbucket"}}}},
		{name: "the same shed twice", input: "sentry_webhook_capture {\n shed gitlab 4\n shed gitlab 4\n}", wantErr: true, errHas: "shed gitlab 4 is given twice"},
		{name: "a provider and one of its integrations", input: "sentry_webhook_capture {\n shed gitlab\n shed gitlab 4\n}",
			want: Handler{Shed: []ShedRule{{Provider: "gitlab"}, {Provider: "gitlab", IntegrationID: 4}}}},
		{name: "max_body_size twice", input: "sentry_webhook_capture {\n max_body_size 1MB\n max_body_size 2MB\n}", wantErr: true, errHas: "max_body_size is given twice"},
		{name: "staging secret", input: "sentry_webhook_capture {\n slack_staging_signing_secret {env.S}\n}", want: Handler{SlackStagingSigningSecret: "{env.S}"}},
		{name: "drop checks without own-repo pull request", input: "sentry_webhook_capture {\n github_drop_checks_without_own_repo_pr\n}", want: Handler{GitHubDropChecksWithoutOwnRepoPR: true}},
		{name: "drop checks takes no argument", input: "sentry_webhook_capture {\n github_drop_checks_without_own_repo_pr on\n}", wantErr: true},
		{name: "drop checks twice", input: "sentry_webhook_capture {\n github_drop_checks_without_own_repo_pr\n github_drop_checks_without_own_repo_pr\n}", wantErr: true, errHas: "is given twice"},
		{name: "slack control answers", input: "sentry_webhook_capture {\n send_slack_response_from_control\n slack_dedupe_seer_events off\n slack_api_base https://slack-gov.com/api\n}",
			want: Handler{SendSlackResponseFromControl: true, SlackDedupeSeerEvents: new(bool), SlackAPIBase: "https://slack-gov.com/api"}},
		{name: "seer dedupe on", input: "sentry_webhook_capture {\n slack_dedupe_seer_events on\n}", want: Handler{SlackDedupeSeerEvents: func() *bool { b := true; return &b }()}},
		{name: "seer dedupe needs on or off", input: "sentry_webhook_capture {\n slack_dedupe_seer_events yes\n}", wantErr: true, errHas: "want on or off"},
		{name: "slack response takes no argument", input: "sentry_webhook_capture {\n send_slack_response_from_control on\n}", wantErr: true},
		{name: "slack response twice", input: "sentry_webhook_capture {\n send_slack_response_from_control\n send_slack_response_from_control\n}", wantErr: true, errHas: "is given twice"},
		{name: "secret twice", input: "sentry_webhook_capture {\n slack_signing_secret a\n slack_signing_secret b\n}", wantErr: true, errHas: "slack_signing_secret is given twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.errHas)
			}
			if !tc.wantErr && !reflect.DeepEqual(h, tc.want) {
				t.Fatalf("got %+v\nwant %+v", h, tc.want)
			}
		})
	}
}

// TestValidate gives a JSON config the Caddyfile's errors.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		h      Handler
		errHas string
	}{
		{"no rules", Handler{}, ""},
		{"an integration", Handler{Shed: []ShedRule{{Provider: "github", IntegrationID: 1}}}, ""},
		{"a provider and one of its integrations", Handler{Shed: []ShedRule{{Provider: "github"}, {Provider: "github", IntegrationID: 1}}}, ""},
		{"no provider", Handler{Shed: []ShedRule{{}}}, `unknown provider ""`},
		{"control-only", Handler{Shed: []ShedRule{{Provider: "google"}}}, "shed google: google webhooks are served by the control silo"},
		{"misspelt", Handler{Shed: []ShedRule{{Provider: "githb"}}}, `shed githb: unknown provider "githb"; the providers whose webhooks are stored are`},
		{"integration of an organization-keyed provider", Handler{Shed: []ShedRule{{Provider: "bitbucket_server", IntegrationID: 3}}}, "stored by organization"},
		{"negative integration", Handler{Shed: []ShedRule{{Provider: "github", IntegrationID: -1}}}, "must be positive"},
		{"twice", Handler{Shed: []ShedRule{{Provider: "slack"}, {Provider: "slack"}}}, "shed slack is given twice"},
		{"negative max_body_size", Handler{MaxBodySize: -1}, "max_body_size -1 must be positive"},
		{"negative bucket_threshold", Handler{BucketThreshold: -5}, "bucket_threshold -5 must be positive"},
		{"slack_api_base over http", Handler{SlackAPIBase: "http://slack.com/api"}, "the scheme must be https"},
		{"slack_api_base not a URL", Handler{SlackAPIBase: "slack.com"}, "not an absolute URL"},
		{"slack_api_base", Handler{SlackAPIBase: "https://slack.com/api"}, ""},
	} {
		err := tc.h.Validate()
		if (err == nil) != (tc.errHas == "") || (err != nil && !strings.Contains(err.Error(), tc.errHas)) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", tc.name, err, tc.errHas)
		}
	}
	if got := shedWarnings([]ShedRule{{Provider: "github", IntegrationID: 1}, {Provider: "github"}, {Provider: "gitlab", IntegrationID: 2}}); len(got) != 1 || !strings.Contains(got[0], "shed github 1 does nothing") {
		t.Errorf("shedWarnings = %q", got)
	}
}

func TestCleanupTwice(t *testing.T) {
	var nilH *Handler
	if err := nilH.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := (&Handler{}).Cleanup(); err != nil {
		t.Fatal(err)
	}
}
