package webhookcapture

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sentrysilo/caddy-silo/modules/internal/promutil"
)

// Collectors are process-wide so counts survive reloads; each config's
// fresh registry gets them registered again in Provision. Labels are
// bounded: provider names come from the parser registry (unknown ones
// never reach the counters) and outcomes from the list below.
var (
	capturedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "sentry",
		Name:      "webhooks_captured_total",
		Help:      "Webhooks handled by sentry_webhook_capture, by provider and outcome.",
	}, []string{"provider", "outcome"})

	rejectedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "sentry",
		Name:      "webhooks_rejected_total",
		Help:      "Webhooks sentry_webhook_capture refused (4xx), by provider and reason.",
	}, []string{"provider", "reason"})

	slackCallsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "sentry",
		Name:      "slack_calls_total",
		Help:      "Slack Web API calls sentry_webhook_capture made as the app, by kind (loading_modal, halt_message) and outcome (ok, error).",
	}, []string{"kind", "outcome"})

	captureDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy",
		Subsystem: "sentry",
		Name:      "webhook_capture_duration_seconds",
		Help:      "Time from the request to its answer in sentry_webhook_capture (captures include the durable commit).",
		Buckets:   []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	}, []string{"provider", "outcome"})
)

// Outcomes.
const (
	outcomeCaptured    = "captured"
	outcomeDuplicate   = "duplicate"
	outcomeCallback    = "callback"
	outcomeShed        = "shed"
	outcomeUnavailable = "unavailable"
	outcomeTooLarge    = "too_large"
	outcomeProxied     = "proxied"
	outcomeProxyFailed = "proxy_failed"
)

func registerMetrics(reg prometheus.Registerer) {
	promutil.Register(reg, capturedTotal)
	promutil.Register(reg, captureDuration)
	promutil.Register(reg, rejectedTotal)
	promutil.Register(reg, slackCallsTotal)
}
