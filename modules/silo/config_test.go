package silo

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	in := `sentry_silo {
		mode monolith
		storage postgres {env.SILO_DATABASE_URL}
		directory_dsn {env.CONTROL_DSN}
		migrate off
		region us http://127.0.0.1:8010 {
			gateway_address http://127.0.0.1:8020
		}
		region de https://de.internal
		default_region de
		url_prefix https://sentry.example.com
		subnet_secret {file./run/secrets/subnet}
		directory_cache 10s 2s
		organization 1 acme us
		organization 2 beta de
		integration 10 github 555 1 2
		drainer {
			off
			poll_interval 2s
			workers 8
			claim_size 100
			max_attempts 5
			backoff 1s 2 1m
			max_age 24h
			request_timeout 5s
			skip_on_failure github
			region_breaker 3 5s
			lease 20s
			dead_letter_retention 48h
			delivered_retention 1h
			callback_hosts chat.example.com
			callback_hosts 10.0.0.9:8443 [::1]:9443
		}
	}`
	var a App
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(a)
	want := `{"mode":"monolith","storage":{"engine":"postgres","dsn":"{env.SILO_DATABASE_URL}"},"directory_dsn":"{env.CONTROL_DSN}","migrate":false,` +
		`"regions":[{"name":"us","address":"http://127.0.0.1:8010","gateway_address":"http://127.0.0.1:8020"},{"name":"de","address":"https://de.internal"}],` +
		`"default_region":"de","url_prefix":"https://sentry.example.com","subnet_secret":"{file./run/secrets/subnet}",` +
		`"directory_cache":{"ttl":10000000000,"negative_ttl":2000000000},"organizations":[{"id":1,"slug":"acme","region":"us"},{"id":2,"slug":"beta","region":"de"}],` +
		`"integrations":[{"id":10,"provider":"github","external_id":"555","organizations":[1,2]}],` +
		`"drainer":{"off":true,"poll_interval":2000000000,"workers":8,"claim_size":100,"max_attempts":5,"backoff":{"base":1000000000,"rate":2,"cap":60000000000},` +
		`"max_age":86400000000000,"request_timeout":5000000000,"skip_on_failure":["github"],"region_breaker":{"failures":3,"probe_interval":5000000000},` +
		`"lease":20000000000,"dead_letter_retention":172800000000000,"delivered_retention":3600000000000,"callback_hosts":["chat.example.com","10.0.0.9:8443","[::1]:9443"]}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestSkipOnFailureNone: `skip_on_failure` with no providers means every
// mailbox is strict, and must survive the trip through JSON.
func TestSkipOnFailureNone(t *testing.T) {
	var a App
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("sentry_silo {\n region us http://a\n drainer {\n skip_on_failure\n }\n}")); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(a)
	var back App
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.resolve(); err != nil {
		t.Fatal(err)
	}
	if got := *back.Drainer.SkipOnFailure; len(got) != 0 {
		t.Fatalf("skip_on_failure with no providers became %v after JSON (%s)", got, js)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"unknown option", "sentry_silo {\n nope\n}", `unrecognized sentry_silo option "nope", at Testfile:2`},
		{"region without address", "sentry_silo {\n region us\n}", "region us needs an address"},
		{"region bad url", "sentry_silo {\n region us ftp://x\n}", "must start with http:// or https://"},
		{"duplicate region", "sentry_silo {\n region us http://a\n region us http://b\n}", `region "us" is defined twice, at Testfile:3`},
		{"unknown default", "sentry_silo {\n region us http://a\n default_region de\n}", `default_region "de" is not a configured region (configured: us), at Testfile:3`},
		{"org unknown region", "sentry_silo {\n organization 1 acme us\n region de http://a\n}", `organization 1 acme: region "us" is not a configured region (configured: de), at Testfile:2`},
		{"org bad id", "sentry_silo {\n organization x acme us\n}", "id must be a positive integer"},
		{"bad duration", "sentry_silo {\n directory_cache forever\n}", `directory_cache ttl: bad duration "forever"`},
		{"negative duration", "sentry_silo {\n drainer {\n lease -1s\n }\n}", `lease: duration "-1s" must be positive`},
		{"bad workers", "sentry_silo {\n drainer {\n workers 0\n }\n}", `workers: "0" must be a positive integer`},
		{"drainer unknown", "sentry_silo {\n drainer {\n turbo\n }\n}", `unrecognized drainer option "turbo"`},
		{"callback_hosts empty", "sentry_silo {\n drainer {\n callback_hosts\n }\n}", "callback_hosts needs at least one host"},
		{"callback_hosts url", "sentry_silo {\n drainer {\n callback_hosts https://chat.example.com\n }\n}", `callback_hosts "https://chat.example.com": want host or host:port, at Testfile:3`},
		{"bad migrate", "sentry_silo {\n migrate maybe\n}", `migrate must be on or off`},
		{"postgres without dsn", "sentry_silo {\n storage postgres\n}", "storage postgres needs exactly one DSN"},
		{"integration without orgs", "sentry_silo {\n integration 10 github 555\n}", "integration needs <id> <provider> <external_id> <organization_id...>, e.g. integration 10 github 555 1 2, at Testfile:2"},
		{"integration bad org", "sentry_silo {\n integration 10 github 555 acme\n}", `organization id "acme" must be a positive integer`},
		{"integration unread provider", "sentry_silo {\n integration 10 bitbucket 555 1\n}", `provider "bitbucket": capture reads the integrations of cursor_origin, discord, gitea, github,`},
		{"organization_integration short", "sentry_silo {\n organization_integration 21 11\n}", "organization_integration needs <id> <integration_id> <organization_id>, e.g. organization_integration 21 11 1, at Testfile:2"},
		{"organization_integration bad id", "sentry_silo {\n organization_integration 21 x 1\n}", `organization_integration 21: "x" must be a positive integer`},
		{"integration twice", "sentry_silo {\n integration 10 github 555 1\n integration 11 github 555 2\n}", `github integration "555" is listed twice, at Testfile:3`},
		{"skip_on_failure misspelt", "sentry_silo {\n drainer {\n skip_on_failure github githb\n }\n}",
			`drainer skip_on_failure githb: unknown provider "githb"; the providers whose webhooks are stored are bitbucket, bitbucket_server, cursor_origin, discord, gitea, github, github_enterprise, gitlab, jira, jira_server, msteams, plugins, slack, slack_staging, vsts, at Testfile:3`},
		{"skip_on_failure control-only", "sentry_silo {\n drainer {\n skip_on_failure vercel\n }\n}", "vercel webhooks are served by the control silo and never stored"},
		{"skip_on_failure twice", "sentry_silo {\n drainer {\n skip_on_failure gitlab gitlab\n }\n}", "drainer skip_on_failure: gitlab is given twice"},
		{"drainer option twice", "sentry_silo {\n drainer {\n workers 1\n workers 2\n }\n}", "drainer workers is given twice, at Testfile:4"},
		{"skip_on_failure lines twice", "sentry_silo {\n drainer {\n skip_on_failure github\n skip_on_failure gitlab\n }\n}", "drainer skip_on_failure is given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a App
			err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestResolve covers the checks and defaults that JSON configs get too.
func TestResolve(t *testing.T) {
	regions := []RegionConfig{{Name: "us", Address: "http://us.internal"}, {Name: "de", Address: "http://de.internal:8010/"}}
	for _, tc := range []struct {
		name string
		app  App
		want string // error substring, "" for success
	}{
		{"no region in control", App{}, "no region configured"},
		{"monolith needs no region", App{Mode: ModeMonolith}, ""},
		{"defaults", App{Regions: regions}, ""},
		{"bad mode", App{Mode: "cell", Regions: regions}, `mode "cell"`},
		{"dup region", App{Regions: append(regions, RegionConfig{Name: "us", Address: "http://x"})}, `region "us" is defined twice`},
		{"bad address", App{Regions: []RegionConfig{{Name: "us", Address: "us.internal"}}}, `region us: address "us.internal"`},
		{"address with query", App{Regions: []RegionConfig{{Name: "us", Address: "http://us?x=1"}}}, "must not have a query"},
		{"bad gateway", App{Regions: []RegionConfig{{Name: "us", Address: "http://us", GatewayAddress: "nope"}}}, `gateway_address "nope"`},
		{"unknown default", App{Regions: regions, DefaultRegion: "eu"}, `default_region "eu" is not a configured region (configured: de, us)`},
		{"org unknown region", App{Regions: regions, Organizations: []StaticOrganization{{ID: 1, Slug: "acme", Region: "eu"}}}, `organization 1 acme eu: region "eu"`},
		{"org dup slug", App{Regions: regions, Organizations: []StaticOrganization{{ID: 1, Slug: "acme", Region: "us"}, {ID: 2, Slug: "acme", Region: "us"}}}, `slug "acme" is listed twice`},
		{"bad url_prefix", App{Regions: regions, URLPrefix: "sentry.io"}, `url_prefix "sentry.io"`},
		{"unknown engine", App{Regions: regions, Storage: &StorageConfig{Engine: "redis"}}, `storage engine "redis"`},
		{"postgres without dsn", App{Regions: regions, Storage: &StorageConfig{Engine: EnginePostgres}}, "storage postgres needs a dsn"},
		{"unset env secret", App{Regions: regions, SubnetSecret: "{env.SILO_TEST_SURELY_UNSET_VAR}"}, "subnet_secret"},
		{"missing file secret", App{Regions: regions, SubnetSecret: "{file./nonexistent/silo-secret}"}, "subnet_secret"},
		{"backoff cap below base", App{Regions: regions, Drainer: &DrainerConfig{Backoff: &BackoffConfig{Base: caddy.Duration(time.Hour), Cap: caddy.Duration(time.Minute)}}}, "cap 1m0s is below base 1h0m0s"},
		{"short lease", App{Regions: regions, Drainer: &DrainerConfig{Lease: caddy.Duration(time.Second)}}, "lease 1s: must be at least 2s"},
		{"integration", App{Regions: regions, Integrations: []StaticIntegration{{ID: 10, Provider: "github", ExternalID: "555", Organizations: []int64{1, 2}}}}, ""},
		{"integration no orgs", App{Regions: regions, Integrations: []StaticIntegration{{ID: 10, Provider: "slack", ExternalID: "T1"}}}, "integration 10 slack T1: name at least one organization"},
		{"integration unknown provider", App{Regions: regions, Integrations: []StaticIntegration{{ID: 10, Provider: "githb", ExternalID: "1", Organizations: []int64{1}}}}, `provider "githb"`},
		{"integration dup id", App{Regions: regions, Integrations: []StaticIntegration{
			{ID: 10, Provider: "github", ExternalID: "1", Organizations: []int64{1}}, {ID: 10, Provider: "slack", ExternalID: "T", Organizations: []int64{1}}}}, "integration id 10 is listed twice"},
		{"integration dup org", App{Regions: regions, Integrations: []StaticIntegration{{ID: 10, Provider: "github", ExternalID: "1", Organizations: []int64{1, 1}}}}, "organization 1 is listed twice"},
		{"organization integration", App{Regions: regions, Integrations: []StaticIntegration{{ID: 11, Provider: "discord", ExternalID: "9", Organizations: []int64{1, 2}}},
			OrganizationIntegrations: []StaticOrganizationIntegration{{ID: 21, IntegrationID: 11, OrganizationID: 1}, {ID: 22, IntegrationID: 11, OrganizationID: 2}}}, ""},
		{"organization integration of no static integration", App{Regions: regions,
			OrganizationIntegrations: []StaticOrganizationIntegration{{ID: 21, IntegrationID: 11, OrganizationID: 1}}}, "organization_integration 21 11 1: integration 11 is not a static integration"},
		{"organization integration not installed", App{Regions: regions, Integrations: []StaticIntegration{{ID: 11, Provider: "discord", ExternalID: "9", Organizations: []int64{2}}},
			OrganizationIntegrations: []StaticOrganizationIntegration{{ID: 21, IntegrationID: 11, OrganizationID: 1}}}, "integration 11 is not installed in organization 1 (its integration line lists [2])"},
		{"organization integration dup id", App{Regions: regions, Integrations: []StaticIntegration{{ID: 11, Provider: "discord", ExternalID: "9", Organizations: []int64{1, 2}}},
			OrganizationIntegrations: []StaticOrganizationIntegration{{ID: 21, IntegrationID: 11, OrganizationID: 1}, {ID: 21, IntegrationID: 11, OrganizationID: 2}}}, "organization integration id 21 is listed twice"},
		{"organization integration two ids", App{Regions: regions, Integrations: []StaticIntegration{{ID: 11, Provider: "discord", ExternalID: "9", Organizations: []int64{1}}},
			OrganizationIntegrations: []StaticOrganizationIntegration{{ID: 21, IntegrationID: 11, OrganizationID: 1}, {ID: 22, IntegrationID: 11, OrganizationID: 1}}}, "integration 11 in organization 1 already has an id"},
		{"bad callback host", App{Regions: regions, Drainer: &DrainerConfig{CallbackHosts: []string{"chat:0"}}}, `drainer callback_hosts "chat:0": bad port`},
		{"skip_on_failure misspelt", App{Regions: regions, Drainer: &DrainerConfig{SkipOnFailure: &[]string{"githb"}}}, `drainer skip_on_failure githb: unknown provider "githb"; the providers whose webhooks are stored are bitbucket,`},
		{"skip_on_failure control-only", App{Regions: regions, Drainer: &DrainerConfig{SkipOnFailure: &[]string{"google"}}}, "google webhooks are served by the control silo"},
		{"skip_on_failure none", App{Regions: regions, Drainer: &DrainerConfig{SkipOnFailure: &[]string{}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.app
			err := a.resolve()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestResolveDefaults(t *testing.T) {
	a := App{Regions: []RegionConfig{{Name: "us", Address: "http://us.internal/"}, {Name: "de", Address: "http://de.internal", GatewayAddress: "http://gw.de.internal"}}}
	if err := a.resolve(); err != nil {
		t.Fatal(err)
	}
	d := a.Drainer
	checks := []struct {
		name     string
		got, def any
	}{
		{"mode", a.Mode, ModeControl},
		{"default_region", a.DefaultRegionName(), "us"},
		{"url_prefix", a.URLPrefixURL().String(), "https://sentry.io"},
		{"storage", a.Storage.Engine, EngineSQLite},
		{"sqlite path", a.storagePath, DefaultSQLitePath()},
		{"migrate", *a.Migrate, true},
		{"cache ttl", time.Duration(a.DirectoryCache.TTL), 30 * time.Second},
		{"negative ttl", time.Duration(a.DirectoryCache.NegativeTTL), 5 * time.Second},
		{"poll_interval", time.Duration(d.PollInterval), time.Second},
		{"workers", d.Workers, 32},
		{"claim_size", d.ClaimSize, 300},
		{"max_attempts", d.MaxAttempts, 10},
		{"backoff base", time.Duration(d.Backoff.Base), 3 * time.Minute},
		{"backoff rate", d.Backoff.Rate, 1.4},
		{"backoff cap", time.Duration(d.Backoff.Cap), 60 * time.Minute},
		{"max_age", time.Duration(d.MaxAge), 72 * time.Hour},
		{"request_timeout", time.Duration(d.RequestTimeout), 12 * time.Second},
		{"skip_on_failure", strings.Join(*d.SkipOnFailure, " "), "github github_enterprise bitbucket bitbucket_server gitlab"},
		{"breaker failures", d.RegionBreaker.Failures, 5},
		{"probe_interval", time.Duration(d.RegionBreaker.ProbeInterval), 10 * time.Second},
		{"lease", time.Duration(d.Lease), 15 * time.Second},
		{"retention", time.Duration(d.DeadLetterRetention), 168 * time.Hour},
		{"region names", strings.Join(a.RegionNames(), ","), "de,us"},
	}
	for _, c := range checks {
		if c.got != c.def {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.def)
		}
	}
	us, _ := a.Region("us")
	if us.Address.String() != "http://us.internal" || us.Gateway != us.Address {
		t.Errorf("us: address %s gateway %s", us.Address, us.Gateway)
	}
	de, _ := a.Region("de")
	if de.Gateway.String() != "http://gw.de.internal" || de.Address.String() != "http://de.internal" {
		t.Errorf("de: address %s gateway %s", de.Address, de.Gateway)
	}
	if _, ok := a.Region("eu"); ok {
		t.Error("found region eu")
	}
}

// TestSecretsFromEnvAndFile shows that secrets are resolved at provision
// time from {env.*} and {file.*}, and that the JSON keeps the placeholder.
func TestSecretsFromEnvAndFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SILO_TEST_SECRET", "from-env")
	for _, tc := range []struct{ placeholder, want string }{
		{"{env.SILO_TEST_SECRET}", "from-env"},
		{"{file." + file + "}", "from-file"},
		{"literal", "literal"},
	} {
		a := App{Regions: []RegionConfig{{Name: "us", Address: "http://us"}}, SubnetSecret: tc.placeholder}
		if err := a.resolve(); err != nil {
			t.Fatal(err)
		}
		if a.Secret() != tc.want {
			t.Errorf("%s resolved to %q, want %q", tc.placeholder, a.Secret(), tc.want)
		}
		js, _ := json.Marshal(a)
		if strings.Contains(string(js), tc.want) && tc.want != "literal" {
			t.Errorf("resolved secret leaked into the JSON: %s", js)
		}
	}
}

// TestCleanupIsNilSafe: Caddy calls Cleanup after a failed Provision too.
func TestCleanupIsNilSafe(t *testing.T) {
	var a App
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestDrainerOptionsThatDoNothing: options of a drainer that does not run
// are accepted (the same config serves other instances and modes) but
// logged.
func TestDrainerOptionsThatDoNothing(t *testing.T) {
	regions := []RegionConfig{{Name: "us", Address: "http://us.internal"}}
	for _, tc := range []struct {
		name string
		app  App
		want string // "" : no warning
	}{
		{"off alone", App{Regions: regions, Drainer: &DrainerConfig{Off: true}}, ""},
		{"tuned and running", App{Regions: regions, Drainer: &DrainerConfig{Workers: 4}}, ""},
		{"tuned and off", App{Regions: regions, Drainer: &DrainerConfig{Off: true, Workers: 4, Lease: caddy.Duration(time.Minute)}},
			"sentry_silo: the drainer is off on this instance, so these drainer options do nothing: workers, lease"},
		{"tuned in monolith", App{Mode: ModeMonolith, Drainer: &DrainerConfig{SkipOnFailure: &[]string{}}},
			"sentry_silo: the mode is monolith, where the drainer does not run, so these drainer options do nothing: skip_on_failure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.WarnLevel)
			a := tc.app
			a.logger = zap.New(core)
			if err := a.resolve(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range logs.All() {
				got = append(got, e.Message)
			}
			if tc.want == "" && len(got) > 0 || tc.want != "" && (len(got) != 1 || got[0] != tc.want) {
				t.Errorf("warnings %q, want %q", got, tc.want)
			}
		})
	}
}
