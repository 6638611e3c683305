package regionroute

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sentrysilo/caddy-silo/modules/internal/promutil"
)

// metrics are the gateway's collectors. Labels are the configured region
// names (or "none" when no region was resolved) and the outcome: bounded,
// never an organization.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
}

// gatewayMetrics are process-wide, so counts survive reloads; each
// config's fresh registry gets them registered again in Provision
// (newMetrics). Collectors built per config restarted from 0 at every
// reload, which breaks every rate() on a dashboard.
var gatewayMetrics = &metrics{
	requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "sentry_gateway", Name: "requests_total",
		Help: "Requests routed to a region by sentry_region_route, by region and outcome.",
	}, []string{"region", "outcome"}),
	duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "sentry_gateway", Name: "request_duration_seconds",
		Help:    "Time from routing to the end of the proxied response, by region and outcome.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 90},
	}, []string{"region", "outcome"}),
	inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "sentry_gateway", Name: "in_flight_requests",
		Help: "Requests being proxied to a region now.",
	}, []string{"region"}),
}

// newMetrics registers the gateway's collectors with a config's registry.
func newMetrics(reg prometheus.Registerer) *metrics {
	promutil.Register(reg, gatewayMetrics.requests)
	promutil.Register(reg, gatewayMetrics.duration)
	promutil.Register(reg, gatewayMetrics.inFlight)
	return gatewayMetrics
}

// series are one region's collectors, resolved once so that the request
// path does no label hashing.
type series struct {
	requests [numOutcomes]prometheus.Counter
	duration [numOutcomes]prometheus.Observer
	inFlight prometheus.Gauge
}

func (m *metrics) series(region string) *series {
	s := &series{inFlight: m.inFlight.WithLabelValues(region)}
	for o := range numOutcomes {
		s.requests[o] = m.requests.WithLabelValues(region, o.String())
		s.duration[o] = m.duration.WithLabelValues(region, o.String())
	}
	return s
}

func (s *series) observe(o outcome, seconds float64) {
	s.requests[o].Inc()
	s.duration[o].Observe(seconds)
}
