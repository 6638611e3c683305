package credproxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sentrysilo/caddy-silo/modules/internal/credentials"
	"github.com/sentrysilo/caddy-silo/modules/internal/promutil"
)

// Process-wide collectors, registered again in each config's registry so
// counts survive reloads (the pattern of docs/design.md: process-wide collectors, registered per config).
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "sentry_credproxy", Name: "requests_total",
		Help: "Credential proxy requests by integration provider and outcome.",
	}, []string{"provider", "outcome"})
	rejectionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "sentry_credproxy", Name: "rejections_total",
		Help: "Credential proxy requests refused with 400, by integration provider and reason.",
	}, []string{"provider", "reason"})
	refreshesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "sentry_credproxy", Name: "token_refreshes_total",
		Help: "Token refresh attempts by integration provider and outcome (ok, reused, error).",
	}, []string{"provider", "outcome"})
)

type metrics struct {
	requests  *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	refreshes *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		requests:  promutil.Register(reg, requestsTotal),
		rejected:  promutil.Register(reg, rejectionsTotal),
		refreshes: promutil.Register(reg, refreshesTotal),
	}
}

// providerLabel bounds the label to the known providers.
func providerLabel(p string) string {
	if credentials.Supports(p) {
		return p
	}
	if p == "" {
		return "none"
	}
	return "other"
}

func (m *metrics) request(provider, outcome string) {
	if m != nil {
		m.requests.WithLabelValues(providerLabel(provider), outcome).Inc()
	}
}

func (m *metrics) refresh(provider, outcome string) {
	if m != nil {
		m.refreshes.WithLabelValues(providerLabel(provider), outcome).Inc()
	}
}
