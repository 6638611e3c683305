package regionroute

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  Handler
		err   string
	}{
		{name: "empty", input: `sentry_region_route`, want: Handler{}},
		{name: "empty block", input: "sentry_region_route {\n}", want: Handler{}},
		{
			name: "everything",
			input: `sentry_region_route {
				read_timeout 30s
				upload_timeout 2m
				max_concurrency 64
				breaker 8 30s
				control_path /api/0/organizations/*/custom/** /api/0/groups/*/stats
				control_path /api/0/shared/special
				pin_path /api/0/shared/**
			}`,
			want: Handler{
				ReadTimeout:    caddy.Duration(30 * time.Second),
				UploadTimeout:  caddy.Duration(2 * time.Minute),
				MaxConcurrency: 64,
				Breaker:        &BreakerConfig{Failures: 8, Window: caddy.Duration(30 * time.Second)},
				ControlPath:    []string{"/api/0/organizations/*/custom/**", "/api/0/groups/*/stats", "/api/0/shared/special"},
				PinPath:        []string{"/api/0/shared/**"},
			},
		},
		{name: "unknown subdirective", input: "sentry_region_route {\n\tread_timout 5s\n}", err: `unknown subdirective "read_timout"`},
		{name: "inline argument", input: `sentry_region_route foo`, err: "wrong argument count"},
		{name: "bad duration", input: "sentry_region_route {\n\tread_timeout soon\n}", err: `read_timeout: invalid duration "soon"`},
		{name: "negative duration", input: "sentry_region_route {\n\tupload_timeout -1s\n}", err: "upload_timeout: invalid duration"},
		{name: "missing duration", input: "sentry_region_route {\n\tread_timeout\n}", err: "wrong argument count"},
		{name: "two durations", input: "sentry_region_route {\n\tread_timeout 1s 2s\n}", err: "wrong argument count"},
		{name: "zero concurrency", input: "sentry_region_route {\n\tmax_concurrency 0\n}", err: "max_concurrency: want a positive integer"},
		{name: "breaker one arg", input: "sentry_region_route {\n\tbreaker 16\n}", err: "breaker: want <failures> <window>"},
		{name: "breaker bad failures", input: "sentry_region_route {\n\tbreaker x 60s\n}", err: "breaker: failures must be a positive integer"},
		{name: "breaker bad window", input: "sentry_region_route {\n\tbreaker 16 never\n}", err: "breaker: invalid window"},
		{name: "control_path empty", input: "sentry_region_route {\n\tcontrol_path\n}", err: "control_path: want at least one path pattern"},
		{name: "control_path relative", input: "sentry_region_route {\n\tcontrol_path api/0/x\n}", err: "must start with /"},
		{name: "pin_path with key", input: "sentry_region_route {\n\tpin_path /a/{key}\n}", err: "takes no {key}"},
		{name: "pin_path bad rest", input: "sentry_region_route {\n\tpin_path /a/**/b\n}", err: "** must be the last segment"},
		{name: "option twice", input: "sentry_region_route {\n\tmax_concurrency 5\n\tmax_concurrency 6\n}", err: "max_concurrency is given twice"},
		{name: "breaker twice", input: "sentry_region_route {\n\tbreaker 5 1s\n\tbreaker 6 1s\n}", err: "breaker is given twice"},
		{name: "control_path reaching no region route", input: "sentry_region_route {\n\tcontrol_path /api/0/x/**\n}",
			err: `control_path "/api/0/x/**" does nothing: it matches no path the gateway sends to a region`},
		{name: "control_path of a built-in carve-out", input: "sentry_region_route {\n\tcontrol_path /api/0/organizations/*/audit-logs/\n}",
			err: "the built-in route /api/0/organizations/*/audit-logs already sends every path it matches to control"},
		{name: "pin_path of a built-in pin", input: "sentry_region_route {\n\tpin_path /api/0/issues/#\n}",
			err: "the built-in route /api/0/issues/* already sends every path it matches to the default region"},
		{name: "control_path twice", input: "sentry_region_route {\n\tcontrol_path /api/0/teams/*/x\n\tcontrol_path /api/0/teams/*/x/\n}", err: `control_path "/api/0/teams/*/x/" is given twice`},
		{name: "control_path under another", input: "sentry_region_route {\n\tcontrol_path /api/0/teams/**\n\tcontrol_path /api/0/teams/*/x\n}",
			err: `control_path "/api/0/teams/*/x" does nothing: control_path "/api/0/teams/**", checked before it, matches every path it matches`},
		{name: "pin_path under a control_path", input: "sentry_region_route {\n\tpin_path /api/0/teams/a/b\n\tcontrol_path /api/0/teams/*/**\n}",
			err: `pin_path "/api/0/teams/a/b" does nothing: control_path "/api/0/teams/*/**"`},
		{name: "a pin_path and the same control_path", input: "sentry_region_route {\n\tpin_path /api/0/shared/x\n\tcontrol_path /api/0/shared/x\n}",
			err: `pin_path "/api/0/shared/x" does nothing: control_path "/api/0/shared/x"`},
		{name: "control_path over a pin_path only", input: "sentry_region_route {\n\tcontrol_path /api/0/shared/a\n\tpin_path /api/0/shared/**\n}",
			want: Handler{ControlPath: []string{"/api/0/shared/a"}, PinPath: []string{"/api/0/shared/**"}}},
		{name: "control_path over part of a built-in pin", input: "sentry_region_route {\n\tcontrol_path /api/0/groups/#/**\n}",
			want: Handler{ControlPath: []string{"/api/0/groups/#/**"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h, tt.want) {
				t.Fatalf("got %+v\nwant %+v", h, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	bad := []Handler{
		{ReadTimeout: -1},
		{MaxConcurrency: -1},
		{Breaker: &BreakerConfig{Failures: -1}},
		{ControlPath: []string{"nope"}},
		{PinPath: []string{"/x/{key}"}},
		{ControlPath: []string{"/api/0/nothing/**"}},
		{ControlPath: []string{"/api/0/teams/**"}, PinPath: []string{"/api/0/teams/x"}},
		{PinPath: []string{"/api/0/relays/**", "/api/0/relays/**"}},
	}
	for _, h := range bad {
		if err := h.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted", h)
		}
	}
}
