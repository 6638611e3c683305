package integration_tests

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// A counter that goes back to zero breaks every rate() on a dashboard:
// the gateway's, capture's and the drainer's counters keep counting across
// any number of reloads, read from the admin API's /metrics before and
// after each.
func TestMetricsKeepCountingAcrossReloads(t *testing.T) {
	s := newDrainSetup(t)
	admin, site := harness.ReservePort(t), harness.ReservePort(t)
	caddyfile := func(generation int) string {
		return fmt.Sprintf(`{
%s	sentry_silo {
		storage %s
		region us %s
		organization 1 acme us
		drainer {
			poll_interval 200ms
		}
	}
}
http://%s {
	route {
		sentry_webhook_capture
		sentry_region_route
		respond "control %d" 200
	}
}
`, harness.GlobalOptions(admin), s.storage, s.us.srv.URL, site.Addr, generation)
	}
	c := harness.Start(t, admin, caddyfile(0))
	t.Cleanup(func() {
		// A CI run saw the first GET after the start reset by the
		// peer (2026-12-01, once): the log says whether Caddy saw it.
		if t.Failed() {
			t.Log(relTail(c.Logs(), 40))
		}
	})
	s.seed(t, 1)
	in := &drainInstance{c: c, base: site.URL()}

	counters := []struct{ name, labels string }{
		{"caddy_sentry_gateway_requests_total", `outcome="ok",region="us"`},
		{"caddy_sentry_webhooks_captured_total", `outcome="captured",provider="github"`},
		{"caddy_sentry_deliveries_total", `outcome="delivered",region="us"`},
	}
	last := make([]float64, len(counters))
	for round := 0; round <= 3; round++ {
		if round > 0 {
			c.Reload(t, caddyfile(round))
		}
		resp, err := harness.Get(in.base + "/api/0/organizations/acme/issues/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		in.capture(t, 1, fmt.Sprintf("delivery-%d", round))
		waitFor(t, "the webhook of round "+fmt.Sprint(round)+" delivered", 30*time.Second, func() bool {
			distinct, _, _ := s.us.delivered()
			return distinct == round+1
		})
		// The delivery is counted right after the region answered.
		waitFor(t, fmt.Sprintf("%s{%s} to pass %v", counters[2].name, counters[2].labels, last[2]), 10*time.Second, func() bool {
			return metricValue(t, admin.Addr, counters[2].name, counters[2].labels) > last[2]
		})
		for i, m := range counters {
			v := metricValue(t, admin.Addr, m.name, m.labels)
			if v < float64(round+1) || v < last[i] {
				t.Errorf("after %d reloads %s{%s} = %v, was %v; want it to keep counting (≥ %d)", round, m.name, m.labels, v, last[i], round+1)
			}
			last[i] = v
		}
	}
}

// counterValue reads one sample of a counter from the admin API's
// /metrics (0 when absent).
func metricValue(t *testing.T, admin, name, labels string) float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(metricsOf(t, admin)))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	f, ok := families[name]
	if !ok {
		return 0
	}
	for _, m := range f.GetMetric() {
		var got []string
		for _, l := range m.GetLabel() {
			got = append(got, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
		}
		if strings.Join(got, ",") == labels {
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
