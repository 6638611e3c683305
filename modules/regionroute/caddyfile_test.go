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
				control_path /api/0/organizations/*/custom/** /api/0/x
				control_path /api/0/y
				pin_path /api/0/shared/**
			}`,
			want: Handler{
				ReadTimeout:    caddy.Duration(30 * time.Second),
				UploadTimeout:  caddy.Duration(2 * time.Minute),
				MaxConcurrency: 64,
				Breaker:        &BreakerConfig{Failures: 8, Window: caddy.Duration(30 * time.Second)},
				ControlPath:    []string{"/api/0/organizations/*/custom/**", "/api/0/x", "/api/0/y"},
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
	}
	for _, h := range bad {
		if err := h.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted", h)
		}
	}
}
