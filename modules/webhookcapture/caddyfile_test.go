package webhookcapture

import (
	"reflect"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	cases := []struct {
		name    string
		input   string
		want    Handler
		wantErr bool
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(h, tc.want) {
				t.Fatalf("got %+v\nwant %+v", h, tc.want)
			}
		})
	}
}

func TestValidateShed(t *testing.T) {
	if err := (&Handler{Shed: []ShedRule{{}}}).Validate(); err == nil {
		t.Fatal("shed rule without provider accepted")
	}
	if err := (&Handler{Shed: []ShedRule{{Provider: "github", IntegrationID: 1}}}).Validate(); err != nil {
		t.Fatal(err)
	}
	var nilH *Handler
	if err := nilH.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := (&Handler{}).Cleanup(); err != nil {
		t.Fatal(err)
	}
}
