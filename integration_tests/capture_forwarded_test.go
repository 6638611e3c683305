package integration_tests

import (
	"bytes"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// forwardedRegion is a fake region that records, by the X-Test-Marker
// header of each request it gets, the X-Forwarded-For lines it came with.
type forwardedRegion struct {
	srv *httptest.Server
	mu  sync.Mutex
	got map[string][]string
}

func newForwardedRegion(t *testing.T) *forwardedRegion {
	r := &forwardedRegion{got: map[string][]string{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		if m := req.Header.Get("X-Test-Marker"); m != "" {
			r.mu.Lock()
			r.got[m] = req.Header.Values("X-Forwarded-For")
			r.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"region":"us"}`)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *forwardedRegion) forwardedFor(marker string) ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.got[marker]
	return v, ok
}

// TestCaptureAppendsPeerToForwardedFor: whatever X-Forwarded-For a sender
// puts on a webhook, capture stores and replays it with the address of the
// TCP peer appended, as the gateway does, so the last entry is always who
// really sent it; the synchronous interactions proxied to a region get the
// same. A forged header alone (a Bitbucket allow-list fooled by any
// unauthenticated POST) can no longer pass for the sender.
func TestCaptureAppendsPeerToForwardedFor(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary; left out under -short")
	}
	region := newForwardedRegion(t)
	admin, site := harness.ReservePort(t), harness.ReservePort(t)
	path := filepath.Join(t.TempDir(), "silo.db")
	caddyfile := fmt.Sprintf(`{
%s	sentry_silo {
		storage sqlite %s
		region us %s
		organization 1 acme us
		drainer {
			poll_interval 100ms
		}
	}
}
http://%s {
	route {
		sentry_webhook_capture {
			slack_signing_secret {env.SILO_TEST_SLACK_SECRET}
		}
		respond "control" 200
	}
}
`, harness.GlobalOptions(admin), path, region.srv.URL, site.Addr)
	c := harness.Start(t, admin, caddyfile, "SILO_TEST_SLACK_SECRET="+captureSlackSecret)
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitForTables(t, db, 30*time.Second, c.Logs, "sentry_organizationintegration", "silo_webhook_payload")
	mustExec(t, db, `INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES (1, 'acme', 'us', 0)`)
	mustExec(t, db, `INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES (13, 'slack', 'T123', 'x', '{}', 0)`)
	mustExec(t, db, `INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES (101, 1, 13, 0)`)
	base := site.URL()

	slackAction := []byte(url.Values{"payload": {`{"type":"block_actions","team":{"id":"T123"},"actions":[{"action_id":"resolve"}]}`}}.Encode())
	tests := []struct {
		name string
		sent []string // X-Forwarded-For lines the sender sends
		want string
	}{
		{"none sent", nil, "127.0.0.1"},
		{"forged", []string{"6.6.6.6"}, "6.6.6.6, 127.0.0.1"},
		{"a chain on two lines", []string{"1.1.1.1, 2.2.2.2", "3.3.3.3"}, "1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"},
	}
	for _, path := range []string{"/extensions/bitbucket/organizations/1/webhook/", "/extensions/slack/action/"} {
		for _, tc := range tests {
			t.Run(strings.Trim(path, "/")+"/"+tc.name, func(t *testing.T) {
				marker := strings.NewReplacer("/", "-", " ", "-").Replace(path + tc.name)
				body := []byte(`{"push":{}}`)
				header := http.Header{"Content-Type": {"application/json"}, "X-Request-Uuid": {marker}}
				want := http.StatusAccepted // captured, then replayed by the drainer
				if strings.Contains(path, "slack") {
					body = slackAction
					header = slackHeaders("application/x-www-form-urlencoded", body)
					want = http.StatusOK // proxied to the region at once
				}
				header.Set("X-Test-Marker", marker)
				for _, v := range tc.sent {
					header.Add("X-Forwarded-For", v)
				}
				req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
				req.Header = header
				resp, err := captureClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Fatalf("POST %s: %d, want %d\n%s", path, resp.StatusCode, want, c.Logs())
				}
				var got []string
				waitFor(t, "the region to get "+marker, 30*time.Second, func() bool {
					var ok bool
					got, ok = region.forwardedFor(marker)
					return ok
				})
				if len(got) != 1 || got[0] != tc.want {
					t.Fatalf("the region got X-Forwarded-For %q, want %q", got, tc.want)
				}
			})
		}
	}
}
