package webhookcapture

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sentrysilo/caddy-silo/modules/internal/rejection"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
)

// A refused webhook keeps Sentry's answer (an empty 400 or 401) but is
// counted by provider and reason and logged at info, without its body or
// signature: before, an operator saw only "rejected" in the outcome
// label and nothing in the log.
func TestCaptureRejectionsHaveReasons(t *testing.T) {
	f := newFixture(t, nil)
	core, logs := observer.New(zap.InfoLevel)
	f.h.rejections = rejection.New(zap.New(core), "webhook rejected", rejectedTotal)
	cases := []struct {
		name   string
		header http.Header
		body   string
		status int
		reason string
	}{
		{"unknown installation", githubHeader("r1"), `{"installation":{"id":1}}`, 400, webhooks.ReasonUnknownIntegration},
		{"no installation", githubHeader("r2"), `{"zen":"secret-body-text"}`, 400, webhooks.ReasonNoRoutingKey},
		{"not JSON", githubHeader("r3"), `installation=555`, 400, webhooks.ReasonBadBody},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := testutil.ToFloat64(rejectedTotal.WithLabelValues("github", c.reason))
			logs.TakeAll()
			w := f.do(t, "POST", "/extensions/github/webhook/", c.header, []byte(c.body))
			if w.Code != c.status || w.Body.Len() != 0 {
				t.Fatalf("answer %d %q, want an empty %d (Sentry's)", w.Code, w.Body.String(), c.status)
			}
			if got := testutil.ToFloat64(rejectedTotal.WithLabelValues("github", c.reason)) - before; got != 1 {
				t.Fatalf("counted %v rejections github/%s, want 1", got, c.reason)
			}
			entries := logs.TakeAll()
			if len(entries) != 1 || entries[0].Message != "webhook rejected" {
				t.Fatalf("logged %v, want one \"webhook rejected\" line", entries)
			}
			fields := entries[0].ContextMap()
			if fields["reason"] != c.reason || fields["provider"] != "github" {
				t.Fatalf("log fields %v, want provider github and reason %s", fields, c.reason)
			}
			for k, v := range fields {
				s, _ := v.(string)
				if strings.Contains(s, "secret-body-text") || strings.Contains(s, "sha256=") {
					t.Fatalf("log field %s holds the body or the signature: %q", k, s)
				}
			}
		})
	}
	// Answers that are not refusals are not counted as rejections.
	before := testutil.ToFloat64(rejectedTotal.WithLabelValues("github", webhooks.ReasonUnknownIntegration))
	if w := f.do(t, "POST", "/extensions/github/webhook/", githubHeader("ok"), []byte(`{"installation":{"id":555}}`)); w.Code != 202 {
		t.Fatalf("capture answered %d", w.Code)
	}
	if got := testutil.ToFloat64(rejectedTotal.WithLabelValues("github", webhooks.ReasonUnknownIntegration)) - before; got != 0 {
		t.Fatalf("a capture counted as a rejection")
	}
}
