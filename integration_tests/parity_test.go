package integration_tests

import (
	"net/http"
	"sort"
	"strings"
	"testing"
)

// TestRepeatedMemberRoutesLikeTheRegion: a webhook whose JSON repeats a
// member is routed by the last occurrence, the one Python's json.loads
// keeps and the region acts on. Integration 556 lives in us only, 555 in
// us and de: routing by the first installation stored one row for us.
func TestRepeatedMemberRoutesLikeTheRegion(t *testing.T) {
	s := newCaptureSetup(t, captureOptions{})
	mustExec(t, s.db, `INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES (30, 'github', '556', 'x', '{}', 0)`)
	mustExec(t, s.db, `INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES (300, 1, 30, 0)`)

	body := []byte(`{"installation":{"id":556},"repository":{"id":7},"installation":{"id":555}}`)
	resp, _ := s.post(t, "/extensions/github/webhook/", githubPush("repeated-1"), body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d, want 202", resp.StatusCode)
	}
	var got []string
	for _, r := range s.rows(t) {
		got = append(got, r.mailbox)
	}
	sort.Strings(got)
	if want := "github:de:10:7:push github:us:10:7:push"; strings.Join(got, " ") != want {
		t.Errorf("stored in %v, want %s (installation 555, the last one)", got, want)
	}
}

// TestRepeatedDSNRoutesLikeTheRegion: the error page with two dsn
// parameters goes to the region of the last, the one Django's
// request.GET.get("dsn") returns and the region renders the page for.
func TestRepeatedDSNRoutesLikeTheRegion(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	resp, body := g.get(t, "/api/embed/error-page/?dsn=https://k@o1.ingest.us.sentry.io/1&dsn=https://k@o1.ingest.de.sentry.io/1")
	if resp.StatusCode != http.StatusOK || string(body) != "hello from de" {
		t.Errorf("got %d %q, want region de (the last dsn)", resp.StatusCode, body)
	}
	if n := len(g.us.requests()); n != 0 {
		t.Errorf("region us received %d requests", n)
	}
}
