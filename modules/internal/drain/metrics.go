package drain

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sentrysilo/caddy-silo/modules/internal/promutil"
	"github.com/sentrysilo/caddy-silo/modules/internal/rate"
)

// Delivery outcomes, the "outcome" label of caddy_sentry_deliveries_total.
const (
	OutcomeDelivered        = "delivered"
	OutcomeRetry            = "retry"
	OutcomeDeferred         = "deferred" // region unreachable: no attempt spent
	OutcomeAttemptsExceeded = "attempts_exceeded"
	OutcomeMaxAge           = "max_age"
	OutcomeAbandoned        = "abandoned" // stop or lost lease mid-request
	// Dead letters for a terminal status are counted as "dropped_<status>".

	// Callback payloads (callback.go). The region's half and the
	// response_url's half are counted apart, under the payload's region.
	OutcomeAnswered          = "answered"           // the region answered; its answer is kept for the POST
	OutcomeCallbackDelivered = "callback_delivered" // the answer was POSTed; the row is deleted
	OutcomeCallbackRetry     = "callback_retry"     // the POST failed and is retried (only the POST)
	OutcomeCallbackRefused   = "callback_refused"   // the response_url is refused; a dead letter
	OutcomeCallbackFailed    = "callback_failed"    // the POST failed for good; a dead letter with the answer
)

// Metrics are the drainer's collectors. Labels carry a region and an
// outcome only (bounded cardinality).
type Metrics struct {
	Deliveries *prometheus.CounterVec
	// Duration is the time of one delivery request to a region.
	Duration *prometheus.HistogramVec
	// Lag is capture-to-delivery time of delivered payloads.
	Lag         *prometheus.HistogramVec
	Depth       *prometheus.GaugeVec
	OldestAge   *prometheus.GaugeVec
	BreakerOpen *prometheus.GaugeVec
	// Delivered counts the payloads delivered to a region over the
	// last minute, for the admin API's status (not exported to
	// Prometheus: Deliveries has the same count).
	Delivered *rate.Meter
}

// NewMetrics builds a set of collectors. They count for as long as they
// live, so a caller whose drainers come and go (one per config, reload
// after reload) builds one set for the process and registers it with each
// config's registry (Register): a counter that restarts from 0 breaks
// every rate() over it.
func NewMetrics() *Metrics {
	return &Metrics{
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caddy_sentry_deliveries_total",
			Help: "Webhook delivery attempts to regions, and response_url callbacks, by region and outcome.",
		}, []string{"region", "outcome"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "caddy_sentry_delivery_duration_seconds",
			Help:    "Duration of one webhook delivery request to a region.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 12},
		}, []string{"region"}),
		Lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "caddy_sentry_delivery_lag_seconds",
			Help:    "Time from capture to delivery of delivered webhooks.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60, 300, 1800, 3600, 14400},
		}, []string{"region"}),
		Depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "caddy_sentry_mailbox_depth",
			Help: "Webhooks waiting in mailboxes, by region.",
		}, []string{"region"}),
		OldestAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "caddy_sentry_mailbox_oldest_age_seconds",
			Help: "Age of the oldest waiting webhook, by region.",
		}, []string{"region"}),
		BreakerOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "caddy_sentry_region_breaker_open",
			Help: "1 while the drainer's breaker for a region is open (deliveries paused).",
		}, []string{"region"}),
		Delivered: rate.New(nil),
	}
}

// Register registers the collectors with reg (a config's registry). A
// registry that has them already keeps them.
func (m *Metrics) Register(reg prometheus.Registerer) {
	for _, c := range []prometheus.Collector{m.Deliveries, m.Duration, m.Lag, m.Depth, m.OldestAge, m.BreakerOpen} {
		promutil.Register(reg, c)
	}
}
