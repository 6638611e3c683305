package integration_tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// validProviders are the providers whose webhooks the edge stores: the
// names an error about shed or skip_on_failure must offer.
var validProviders = []string{"bitbucket", "bitbucket_server", "discord", "github", "github_enterprise",
	"gitlab", "jira", "jira_server", "msteams", "plugins", "slack", "vsts"}

// noOpConfig is one configuration that would do nothing (or not what it
// says), as a Caddyfile and as the JSON an operator could post instead.
type noOpConfig struct {
	name string
	// app: lines inside sentry_silo { }; site: lines of the :8000 site.
	app, site string
	// jsonApp: members added to the sentry_silo app; jsonHandler: the
	// handler object placed before reverse_proxy. Empty: no JSON form.
	jsonApp, jsonHandler string
	env                  []string
	// want are substrings of the error; warn, when set, means the config
	// is valid and this warning must be logged instead.
	want []string
	warn string
}

var noOpConfigs = []noOpConfig{
	{
		name:        "shed a control-only provider",
		site:        "sentry_webhook_capture {\n\t\tshed vercel\n\t}",
		jsonHandler: `{"handler":"sentry_webhook_capture","shed":[{"provider":"vercel"}]}`,
		want:        append([]string{"shed vercel", "control silo"}, validProviders...),
	},
	{
		name:        "shed a misspelt provider",
		site:        "sentry_webhook_capture {\n\t\tshed githb\n\t}",
		jsonHandler: `{"handler":"sentry_webhook_capture","shed":[{"provider":"githb"}]}`,
		want:        append([]string{"shed githb", "unknown provider"}, validProviders...),
	},
	{
		name:        "shed an integration of a provider stored by organization",
		site:        "sentry_webhook_capture {\n\t\tshed bitbucket 42\n\t}",
		jsonHandler: `{"handler":"sentry_webhook_capture","shed":[{"provider":"bitbucket","integration_id":42}]}`,
		want:        []string{"shed bitbucket 42", "organization"},
	},
	{
		name:        "the same shed rule twice",
		site:        "sentry_webhook_capture {\n\t\tshed github\n\t\tshed github\n\t}",
		jsonHandler: `{"handler":"sentry_webhook_capture","shed":[{"provider":"github"},{"provider":"github"}]}`,
		want:        []string{"shed github", "twice"},
	},
	{
		name: "an integration shed rule under a provider-wide one",
		site: "sentry_webhook_capture {\n\t\tshed github\n\t\tshed github 42\n\t}",
		warn: "shed github 42",
	},
	{
		name:        "a signing secret placeholder that resolves to nothing",
		site:        "sentry_webhook_capture {\n\t\tslack_signing_secret {env.SILO_TEST_UNSET_SECRET}\n\t}",
		jsonHandler: `{"handler":"sentry_webhook_capture","slack_signing_secret":"{env.SILO_TEST_UNSET_SECRET}"}`,
		want:        []string{"slack_signing_secret", "SILO_TEST_UNSET_SECRET"},
	},
	{
		name:    "skip_on_failure with a misspelt provider",
		app:     "drainer {\n\t\t\tskip_on_failure github githb\n\t\t}",
		jsonApp: `"drainer":{"skip_on_failure":["github","githb"]}`,
		want:    append([]string{"skip_on_failure", "githb"}, validProviders...),
	},
	{
		name: "a drainer option given twice",
		app:  "drainer {\n\t\t\tworkers 4\n\t\t\tworkers 8\n\t\t}",
		want: []string{"workers", "twice"},
	},
	{
		name: "drainer options of a drainer that is off",
		app:  "drainer {\n\t\t\toff\n\t\t\tworkers 8\n\t\t}",
		warn: "workers",
	},
	{
		name:        "a control_path that no region route reaches",
		site:        "sentry_region_route {\n\t\tcontrol_path /api/0/nothing-here/**\n\t}",
		jsonHandler: `{"handler":"sentry_region_route","control_path":["/api/0/nothing-here/**"]}`,
		want:        []string{"control_path", "/api/0/nothing-here/**", "control"},
	},
	{
		name:        "a pin_path hidden by a control_path",
		site:        "sentry_region_route {\n\t\tcontrol_path /api/0/organizations/*/billing/**\n\t\tpin_path /api/0/organizations/*/billing/x\n\t}",
		jsonHandler: `{"handler":"sentry_region_route","control_path":["/api/0/organizations/*/billing/**"],"pin_path":["/api/0/organizations/*/billing/x"]}`,
		want:        []string{"pin_path", "/api/0/organizations/*/billing/x", "control_path"},
	},
	{
		name: "a region route option given twice",
		site: "sentry_region_route {\n\t\tread_timeout 10s\n\t\tread_timeout 20s\n\t}",
		want: []string{"read_timeout", "twice"},
	},
	{
		name:        "an allow_host wildcard",
		site:        "sentry_cred_proxy {\n\t\tallow_host *.example.com\n\t}",
		jsonHandler: `{"handler":"sentry_cred_proxy","allow_hosts":["*.example.com"]}`,
		want:        []string{"allow_host", "*.example.com"},
	},
	{
		name:        "the same oauth provider twice",
		site:        "sentry_cred_proxy {\n\t\toauth gitlab a b\n\t\toauth gitlab c d\n\t}",
		jsonHandler: `{"handler":"sentry_cred_proxy","oauth":[{"provider":"gitlab","client_id":"a","client_secret":"b"},{"provider":"gitlab","client_id":"c","client_secret":"d"}]}`,
		want:        []string{"oauth", "gitlab", "twice"},
	},
	{
		name:        "an MS Teams client without its secret",
		site:        "sentry_cred_proxy {\n\t\tmsteams_client_id abc\n\t}",
		jsonHandler: `{"handler":"sentry_cred_proxy","msteams_client_id":"abc"}`,
		want:        []string{"msteams_client_id", "msteams_client_secret"},
	},
	{
		name:        "a credential placeholder that resolves to nothing",
		site:        "sentry_cred_proxy {\n\t\tdiscord_bot_token {env.SILO_TEST_UNSET_SECRET}\n\t}",
		jsonHandler: `{"handler":"sentry_cred_proxy","discord_bot_token":"{env.SILO_TEST_UNSET_SECRET}"}`,
		want:        []string{"discord_bot_token", "SILO_TEST_UNSET_SECRET"},
	},
	{
		name: "handler options in monolith mode",
		app:  "mode monolith",
		site: "sentry_webhook_capture {\n\t\tshed github\n\t}",
		warn: "monolith",
	},
}

func (c noOpConfig) caddyfile() string {
	return fmt.Sprintf("{\n\tsentry_silo {\n\t\tregion us http://127.0.0.1:8010\n\t\t%s\n\t}\n}\n:8000 {\n\t%s\n\treverse_proxy 127.0.0.1:9000\n}\n", c.app, c.site)
}

func (c noOpConfig) json() string {
	app := `"regions":[{"name":"us","address":"http://127.0.0.1:8010"}]`
	if c.jsonApp != "" {
		app += "," + c.jsonApp
	}
	return fmt.Sprintf(`{"apps":{"sentry_silo":{%s},"http":{"servers":{"srv0":{"listen":[":8000"],"routes":[{"handle":[%s,{"handler":"reverse_proxy","upstreams":[{"dial":"127.0.0.1:9000"}]}]}]}}}}}`, app, c.jsonHandler)
}

// caddyValidate runs `caddy validate` on a config file and returns its exit
// status and output.
func caddyValidate(t *testing.T, name, config string, env []string, args ...string) (int, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(harness.Binary(t), append([]string{"validate", "--config", path}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("caddy validate: %v\n%s", err, out)
	}
	return 0, string(out)
}

// TestValidateRefusesNoOpConfig runs the real binary's `caddy validate` on
// configurations that would silently do nothing: each must be refused with
// an error that says why (and lists the valid names where there is a
// list), as a Caddyfile and as JSON alike; the few that a legitimate config
// may contain pass with a warning instead.
func TestValidateRefusesNoOpConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary; left out under -short")
	}
	for _, c := range noOpConfigs {
		t.Run(c.name, func(t *testing.T) {
			forms := []struct{ file, config string }{{"Caddyfile", c.caddyfile()}}
			if c.jsonHandler != "" || c.jsonApp != "" {
				if c.jsonHandler == "" {
					c.jsonHandler = `{"handler":"sentry_webhook_capture"}`
				}
				forms = append(forms, struct{ file, config string }{"caddy.json", c.json()})
			}
			for _, f := range forms {
				var args []string
				if f.file == "Caddyfile" {
					args = []string{"--adapter", "caddyfile"}
				}
				code, out := caddyValidate(t, f.file, f.config, c.env, args...)
				if c.warn != "" {
					if code != 0 {
						t.Errorf("%s: exit %d, want 0 with a warning:\n%s", f.file, code, out)
					} else if !strings.Contains(out, `"level":"warn"`) || !strings.Contains(out, c.warn) {
						t.Errorf("%s: no warning naming %q:\n%s", f.file, c.warn, out)
					}
					continue
				}
				if code == 0 {
					t.Errorf("%s: caddy validate exited 0; want a refusal naming %q:\n%s\n%s", f.file, c.want, f.config, out)
					continue
				}
				for _, w := range c.want {
					if !strings.Contains(out, w) {
						t.Errorf("%s: the error does not name %q:\n%s", f.file, w, out)
					}
				}
			}
		})
	}
}

// TestValidateAcceptsQuickstart guards the other side: the shipped
// quickstart validates without a warning about its own options.
func TestValidateAcceptsQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary; left out under -short")
	}
	raw, err := os.ReadFile("../caddyfile_examples/quickstart.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	code, out := caddyValidate(t, "Caddyfile", string(raw), nil, "--adapter", "caddyfile")
	if code != 0 || !strings.Contains(out, "Valid configuration") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if strings.Contains(out, `"level":"warn"`) {
		t.Errorf("the quickstart validates with a warning:\n%s", out)
	}
}
