package credproxy

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	cases := []struct {
		name, input string
		want        Handler
		err         string
	}{
		{name: "empty", input: `sentry_cred_proxy`, want: Handler{}},
		{name: "everything", input: `sentry_cred_proxy {
			timeout 2s 45s
			allow_host 127.0.0.1 ghe.internal:8443
			allow_host [::1]
			github_app_id {env.GH_APP}
			github_private_key {file./run/secrets/github.pem}
			msteams_client_id id
			msteams_client_secret {env.MS_SECRET}
			msteams_token_url https://login.example/token
			oauth gitlab cid csecret
			oauth vsts vid vsecret https://login.example/vsts
			discord_bot_token {env.DISCORD}
		}`, want: Handler{
			Timeout:             &Timeout{Connect: caddy.Duration(2 * time.Second), Read: caddy.Duration(45 * time.Second)},
			AllowHosts:          []string{"127.0.0.1", "ghe.internal:8443", "[::1]"},
			GitHubAppID:         "{env.GH_APP}",
			GitHubPrivateKey:    "{file./run/secrets/github.pem}",
			MSTeamsClientID:     "id",
			MSTeamsClientSecret: "{env.MS_SECRET}",
			MSTeamsTokenURL:     "https://login.example/token",
			OAuth: []OAuthClient{
				{Provider: "gitlab", ClientID: "cid", ClientSecret: "csecret"},
				{Provider: "vsts", ClientID: "vid", ClientSecret: "vsecret", TokenURL: "https://login.example/vsts"},
			},
			DiscordBotToken: "{env.DISCORD}",
		}},
		{name: "unknown subdirective", input: "sentry_cred_proxy {\n max_body 1\n}", err: "unrecognized"},
		{name: "inline argument", input: "sentry_cred_proxy foo", err: "wrong argument"},
		{name: "timeout one value", input: "sentry_cred_proxy {\n timeout 3s\n}", err: "wrong argument"},
		{name: "timeout bad", input: "sentry_cred_proxy {\n timeout 3 x\n}", err: "bad connect"},
		{name: "timeout zero", input: "sentry_cred_proxy {\n timeout 0s 1s\n}", err: "positive"},
		{name: "allow_host empty", input: "sentry_cred_proxy {\n allow_host\n}", err: "wrong argument"},
		{name: "allow_host url", input: "sentry_cred_proxy {\n allow_host https://x\n}", err: "want host"},
		{name: "allow_host bad port", input: "sentry_cred_proxy {\n allow_host x:99999\n}", err: "bad port"},
		{name: "oauth unknown provider", input: "sentry_cred_proxy {\n oauth github a b\n}", err: "want gitlab or vsts"},
		{name: "oauth short", input: "sentry_cred_proxy {\n oauth gitlab a\n}", err: "wrong argument"},
		{name: "twice", input: "sentry_cred_proxy {\n github_app_id 1\n github_app_id 2\n}", err: "github_app_id given twice"},
		{name: "timeout twice", input: "sentry_cred_proxy {\n timeout 1s 2s\n timeout 3s 4s\n}", err: "timeout given twice"},
		{name: "allow_host wildcard", input: "sentry_cred_proxy {\n allow_host *.example.com\n}", err: `allow_host "*.example.com": wildcards are not supported`},
		{name: "allow_host wildcard with a port", input: "sentry_cred_proxy {\n allow_host *:443\n}", err: "wildcards are not supported"},
		{name: "allow_host not a name", input: "sentry_cred_proxy {\n allow_host exa!mple.com\n}", err: "not a host name"},
		{name: "allow_host twice", input: "sentry_cred_proxy {\n allow_host a.example\n allow_host A.example.\n}", err: `allow_host "A.example." is given twice`},
		{name: "allow_host port twice", input: "sentry_cred_proxy {\n allow_host a.example:443 a.example:443\n}", err: "is given twice"},
		{name: "oauth twice", input: "sentry_cred_proxy {\n oauth gitlab a b\n oauth gitlab c d\n}", err: "oauth gitlab is given twice"},
		{name: "oauth bad token url", input: "sentry_cred_proxy {\n oauth vsts a b login.example/token\n}", err: "oauth vsts token_url"},
		{name: "app id without key", input: "sentry_cred_proxy {\n github_app_id 1\n}", err: "github_app_id and github_private_key must be set together"},
		{name: "teams id without secret", input: "sentry_cred_proxy {\n msteams_client_id a\n}", err: "msteams_client_id and msteams_client_secret must be set together"},
		{name: "teams token url alone", input: "sentry_cred_proxy {\n msteams_token_url https://x.example/t\n}", err: "msteams_token_url is set without msteams_client_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.input))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h, c.want) {
				a, _ := json.Marshal(h)
				b, _ := json.Marshal(c.want)
				t.Fatalf("got  %s\nwant %s", a, b)
			}
		})
	}
}

func TestParsePrivateKey(t *testing.T) {
	der := x509.MarshalPKCS1PrivateKey(testKey(t))
	good := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}))
	if _, err := parsePrivateKey(good); err != nil {
		t.Fatal(err)
	}
	if _, err := parsePrivateKey(strings.ReplaceAll(good, "\n", `\n`)); err != nil {
		t.Fatalf("escaped newlines: %v", err)
	}
	bad := strings.Replace(good, "MII", "XXX", 1)
	_, err := parsePrivateKey(bad)
	if err == nil || strings.Contains(err.Error(), "XXX") || strings.Contains(err.Error(), good[40:60]) {
		t.Fatalf("bad key: %v", err)
	}
}

func TestAllowList(t *testing.T) {
	a, _, err := parseAllowList([]string{"127.0.0.1", "ghe.internal:8443", "[::1]", "Upper.Example."})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		host, port string
		want       bool
	}{
		{"127.0.0.1", "1234", true},
		{"ghe.internal", "8443", true},
		{"ghe.internal", "443", false},
		{"::1", "80", true},
		{"0:0:0:0:0:0:0:1", "80", true},
		{"upper.example", "443", true},
		{"127.0.0.2", "80", false},
	}
	for _, c := range cases {
		if got := a.allows(c.host, c.port); got != c.want {
			t.Errorf("allows(%s, %s) = %v", c.host, c.port, got)
		}
	}
}

// TestValidate gives a JSON config the Caddyfile's errors.
func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		h    Handler
		err  string
	}{
		{"empty", Handler{}, ""},
		{"allow_host", Handler{AllowHosts: []string{"a.example", "a.example:8443"}}, ""},
		{"allow_host wildcard", Handler{AllowHosts: []string{"*.example.com"}}, "wildcards are not supported"},
		{"allow_host twice", Handler{AllowHosts: []string{"10.0.0.1", "10.0.0.1"}}, "is given twice"},
		{"oauth twice", Handler{OAuth: []OAuthClient{{Provider: "vsts", ClientID: "a", ClientSecret: "b"}, {Provider: "vsts", ClientID: "c", ClientSecret: "d"}}}, "oauth vsts is given twice"},
		{"oauth without secret", Handler{OAuth: []OAuthClient{{Provider: "gitlab", ClientID: "a"}}}, "needs a client_id and a client_secret"},
		{"oauth github", Handler{OAuth: []OAuthClient{{Provider: "github", ClientID: "a", ClientSecret: "b"}}}, "want gitlab or vsts"},
		{"key without app id", Handler{GitHubPrivateKey: "{file.k}"}, "must be set together"},
		{"teams secret without id", Handler{MSTeamsClientSecret: "s"}, "must be set together"},
		{"teams token url alone", Handler{MSTeamsTokenURL: "https://x.example/t"}, "never used"},
		{"teams token url not a URL", Handler{MSTeamsClientID: "a", MSTeamsClientSecret: "b", MSTeamsTokenURL: "x.example/t"}, "not an http(s) URL"},
		{"negative timeout", Handler{Timeout: &Timeout{Connect: -1}}, "must not be negative"},
	} {
		err := c.h.Validate()
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", c.name, err, c.err)
		}
	}
	_, warnings, err := parseAllowList([]string{"a.example:443", "a.example", "b.example:80"})
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "allow_host a.example:443 restricts nothing") {
		t.Errorf("warnings %q, %v", warnings, err)
	}
}
