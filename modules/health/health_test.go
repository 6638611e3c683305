package health

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/sentrysilo/caddy-silo/modules/silo"
)

// The two endpoints answer GET and HEAD, never cached; readiness is 503
// with its reasons until ready; every other path goes on.
func TestServeHTTP(t *testing.T) {
	notReady := silo.Readiness{Storage: "migrating", Directory: "waiting", Reasons: []string{"the storage migrations have not run yet"}}
	ready := silo.Readiness{Ready: true, Storage: "migrated", Directory: "answered"}
	tests := []struct {
		name       string
		method     string
		path       string
		readiness  silo.Readiness
		wantStatus int
		wantBody   string
		wantNext   bool
	}{
		{name: "liveness", method: "GET", path: HealthPath, readiness: notReady, wantStatus: 200, wantBody: `{"status":"ok"}` + "\n"},
		{name: "not ready", method: "GET", path: ReadyPath, readiness: notReady, wantStatus: 503,
			wantBody: `{"ready":false,"storage":"migrating","directory":"waiting","reasons":["the storage migrations have not run yet"]}` + "\n"},
		{name: "ready", method: "GET", path: ReadyPath, readiness: ready, wantStatus: 200,
			wantBody: `{"ready":true,"storage":"migrated","directory":"answered"}` + "\n"},
		{name: "HEAD has no body", method: "HEAD", path: ReadyPath, readiness: notReady, wantStatus: 503},
		{name: "POST is refused", method: "POST", path: HealthPath, readiness: ready, wantStatus: 405},
		{name: "Sentry's own health check goes on", method: "GET", path: "/_health/", readiness: ready, wantNext: true},
		{name: "a path below goes on", method: "GET", path: ReadyPath + "/x", readiness: ready, wantNext: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{ready: func() silo.Readiness { return tc.readiness }}
			rec := httptest.NewRecorder()
			called := false
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				called = true
				w.WriteHeader(http.StatusTeapot)
				return nil
			})
			if err := h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil), next); err != nil {
				t.Fatal(err)
			}
			if called != tc.wantNext {
				t.Fatalf("next handler called = %v, want %v", called, tc.wantNext)
			}
			if tc.wantNext {
				return
			}
			if rec.Code != tc.wantStatus || rec.Body.String() != tc.wantBody {
				t.Fatalf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tc.wantStatus, tc.wantBody)
			}
			switch {
			case tc.wantStatus == http.StatusMethodNotAllowed:
				if got := rec.Header().Get("Allow"); got != "GET, HEAD" {
					t.Fatalf("Allow = %q", got)
				}
			case rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Content-Type") != "application/json":
				t.Fatalf("headers %v, want no-store JSON", rec.Header())
			}
		})
	}
}

// The directive takes no arguments and no block.
func TestUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		input   string
		wantErr bool
	}{
		{"sentry_silo_health", false},
		{"sentry_silo_health /x", true},
		{"sentry_silo_health {\n path /x\n}", true},
	}
	for _, tc := range tests {
		t.Run(tc.input, func(t *testing.T) {
			err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want an error: %v", err, tc.wantErr)
			}
		})
	}
}
