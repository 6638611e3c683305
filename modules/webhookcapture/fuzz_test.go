package webhookcapture

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// FuzzServeHTTP drives the whole handler (body limit, parsers, storage,
// answers) with arbitrary paths, headers and bodies over a healthy store
// and directory: nothing may panic or answer 5xx, and every row stored
// keeps the body byte for byte.
func FuzzServeHTTP(f *testing.F) {
	f.Add("/extensions/github/webhook/", "push", "application/json", []byte(`{"installation":{"id":555},"repository":{"id":9}}`))
	f.Add("/extensions/github/webhook/", "installation", "application/json", []byte(`{"installation":{"id":"555"}}`))
	f.Add("/extensions/slack/commands/", "", "application/x-www-form-urlencoded", []byte("team_id=T123&response_url=https%3A%2F%2Fh%2Fx"))
	f.Add("/extensions/slack/event/", "", "application/json", []byte(`{"type":"url_verification","challenge":"\u00ff"}`))
	f.Add("/extensions/discord/interactions/", "", "application/json", []byte(`{"type":2,"guild_id":"G1","application_id":"a","token":"t"}`))
	f.Add("/extensions/bitbucket/organizations/2/webhook/", "", "", []byte{0xff, 0x00})
	f.Add("/plugins/github/organizations/1/webhook/", "", "", []byte(nil))
	f.Add("/extensions/jira-server/issue-updated/x.y.z/", "", "", []byte(`{"changelog":{}}`))
	f.Add("/extensions/github/webhook/", "check_run", "application/json", []byte(`{"action":"completed","installation":{"id":555},"repository":{"id":9},"check_run":{"pull_requests":[]}}`))
	f.Add("/extensions/gitea/organizations/1/webhook/23/", "", "application/json", []byte(`{"repository":{"id":9}}`))
	f.Add("/extensions/cursor-origin/webhook/", "", "application/json", []byte(`{"event":{"payload":{"repository":{"id":"r"}}}}`))
	f.Add("/extensions/slack-staging/event/", "", "application/json", []byte(`{"type":"url_verification","challenge":"c"}`))
	// Regions that answer, so synchronous interactions get an answer too.
	region := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer region.Close()
	fx := newFixture(f, map[string]string{"us": region.URL, "de": region.URL})
	f.Fuzz(func(t *testing.T, path, event, contentType string, body []byte) {
		u, err := url.Parse(path)
		if err != nil || u.Path == "" || u.Path[0] != '/' {
			return
		}
		// Caddy's server answers 400 to header values with control
		// characters before any handler runs, so such requests never
		// reach this one (and could not be forwarded to a region).
		if !validHeaderValue(event) || !validHeaderValue(contentType) {
			return
		}
		r := httptest.NewRequest(http.MethodPost, "http://x/", bytes.NewReader(body))
		r.URL = u
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("X-GitHub-Event", event)
		r.Header.Set("X-GitHub-Delivery", event)
		before := len(fx.st.stored())
		w := httptest.NewRecorder()
		if err := fx.h.ServeHTTP(w, r, fx.next); err != nil {
			t.Fatalf("error: %v", err)
		}
		if w.Code >= 500 {
			t.Fatalf("%s: status %d", path, w.Code)
		}
		for _, row := range fx.st.stored()[before:] {
			if !bytes.Equal(row.Body, body) {
				t.Fatalf("stored body %q, sent %q", row.Body, body)
			}
		}
	})
}

// validHeaderValue is RFC 9110's field-value check, as Go's server applies
// it: no control characters other than horizontal tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
