package siloconsole

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// The Caddyfile, adapted as Caddy does it: the handler's options, and the
// admin address taken from the global admin option when the handler
// gives none.
func TestCaddyfile(t *testing.T) {
	cases := []struct {
		name    string
		global  string
		handler string
		want    string // the handler's JSON, without its "handler" key
		errHas  string
	}{
		{name: "defaults", handler: `sentry_silo_console`, want: `{}`},
		{name: "everything", handler: "sentry_silo_console {\n admin 127.0.0.1:2999\n read_only\n refresh 10s\n}",
			want: `{"admin":"127.0.0.1:2999","read_only":true,"refresh":10000000000}`},
		{name: "the global admin address", global: "admin 127.0.0.1:2888", handler: `sentry_silo_console`,
			want: `{"admin":"127.0.0.1:2888"}`},
		{name: "the global admin with origins", global: "admin unix//run/caddy-admin.sock {\n origins localhost\n}", handler: `sentry_silo_console`,
			want: `{"admin":"unix//run/caddy-admin.sock"}`},
		{name: "its own admin wins", global: "admin 127.0.0.1:2888", handler: "sentry_silo_console {\n admin localhost:2019\n}",
			want: `{"admin":"localhost:2019"}`},
		{name: "admin off", global: "admin off", handler: `sentry_silo_console`, errHas: "turns the admin endpoint off"},
		{name: "unknown option", handler: "sentry_silo_console {\n actions on\n}", errHas: `unknown sentry_silo_console option "actions"`},
		{name: "inline argument", handler: "sentry_silo_console on", errHas: "wrong argument count"},
		{name: "option twice", handler: "sentry_silo_console {\n read_only\n read_only\n}", errHas: "read_only is given twice"},
		{name: "read_only takes no value", handler: "sentry_silo_console {\n read_only yes\n}", errHas: "wrong argument count"},
		{name: "bad refresh", handler: "sentry_silo_console {\n refresh soon\n}", errHas: "refresh:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := "{\n" + tc.global + "\n}\n:9090 {\n route {\n" + tc.handler + "\n }\n}\n"
			out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("error %v, want one containing %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var cfg struct {
				Apps struct {
					HTTP struct {
						Servers map[string]struct {
							Routes []struct {
								Handle []struct {
									Routes []struct {
										Handle []map[string]any `json:"handle"`
									} `json:"routes"`
								} `json:"handle"`
							} `json:"routes"`
						} `json:"servers"`
					} `json:"http"`
				} `json:"apps"`
			}
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatal(err)
			}
			h := cfg.Apps.HTTP.Servers["srv0"].Routes[0].Handle[0].Routes[0].Handle[0]
			if h["handler"] != "sentry_silo_console" {
				t.Fatalf("handler %v in %s", h, out)
			}
			delete(h, "handler")
			got, _ := json.Marshal(h)
			if string(got) != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// Validate refuses what cannot work, at load time.
func TestValidate(t *testing.T) {
	cases := []struct {
		name   string
		h      Handler
		errHas string
	}{
		{name: "defaults", h: Handler{}},
		{name: "unix socket", h: Handler{Admin: "unix//run/caddy-admin.sock"}},
		{name: "wildcard", h: Handler{Admin: ":2019"}},
		{name: "port range", h: Handler{Admin: "localhost:2019-2020"}, errHas: "one address"},
		{name: "file descriptor", h: Handler{Admin: "fd/3"}, errHas: "file descriptor"},
		{name: "bad address", h: Handler{Admin: "localhost:notaport"}, errHas: `admin "localhost:notaport"`},
		{name: "refresh too short", h: Handler{Refresh: 1_000_000}, errHas: "at least 1s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.Validate()
			if tc.errHas == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("error %v, want one containing %q", err, tc.errHas)
			}
		})
	}
}
