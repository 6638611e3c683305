// Package drain is the mailbox drainer: it replays captured webhooks
// (silo_webhook_payload rows) to their regions, FIFO within a strict
// mailbox and MailboxConcurrency at a time within a skip-on-failure one, with
// backoff, dead letters, a per-region breaker that pauses a region instead
// of spending attempts, and leases so that one mailbox is drained by one
// instance at a time. Nothing here imports Caddy; the sentry_silo app runs
// a Drainer (the admin API, which needs only the store and Wake, is package
// admin).
//
// The files follow one delivery: drainer.go runs the dispatcher and its
// workers (queue.go holds what they are handed, scan.go the backstop
// scan); turn.go is one mailbox's turn under its lease (leases.go) and one
// row's decisions; deliver.go is one request to a region and outcome.go
// records what it meant; callback.go and callbackpolicy.go are the
// Slack/Discord response_url payloads; breaker.go and breakers.go pause
// unreachable regions. The maintenance loops are small files of their own:
// probe.go, purge.go, gauges.go, listen.go.
package drain

import (
	"crypto/x509"
	"net/http"
	"time"
)

// Defaults (docs/sentry_silo.md, the drainer block).
const (
	DefaultPollInterval         = time.Second
	DefaultWorkers              = 32
	DefaultClaimSize            = 300
	DefaultMaxAttempts          = 10
	DefaultBackoffBase          = 3 * time.Minute
	DefaultBackoffRate          = 1.4
	DefaultBackoffCap           = 60 * time.Minute
	DefaultMaxAge               = 72 * time.Hour
	DefaultRequestTimeout       = 12 * time.Second
	DefaultBreakerFailures      = 5
	DefaultBreakerProbeInterval = 10 * time.Second
	DefaultLease                = 15 * time.Second
	DefaultDeadLetterRetention  = 168 * time.Hour
	DefaultStopGrace            = 2 * time.Second
	DefaultGaugeInterval        = 15 * time.Second
	DefaultPurgeInterval        = 10 * time.Minute
	DefaultScanLimit            = 1000
	// DefaultMailboxConcurrency (Config.MailboxConcurrency) is Sentry's
	// worker_threads. The drain-parallel bench: 4 drains one busy mailbox
	// 4.1x faster than 1 (1,380 against 335 rows/s); over 100 mailboxes with
	// a 10 ms region 1.71x, and 8 no more (1.37x): more than 4 helps only a
	// single hot mailbox, and a region then gets workers x 8 = 256 requests
	// at once from each instance after an outage.
	DefaultMailboxConcurrency = 4
)

// DefaultSkipOnFailure are the providers whose mailboxes move past a failed
// row instead of stopping (Sentry's skip_on_failure_providers, 2026).
func DefaultSkipOnFailure() []string {
	return []string{"github", "github_enterprise", "bitbucket", "bitbucket_server", "gitlab"}
}

// Config tunes a Drainer. Zero values mean the defaults above.
type Config struct {
	// Owner names this drainer in mailbox leases; it must differ between
	// drainers that may run at once (instances, and the old and new app
	// during a reload). Empty means a random id.
	Owner string

	PollInterval time.Duration
	Workers      int
	ClaimSize    int
	MaxAttempts  int
	// Backoff is delay = min(BackoffBase * BackoffRate^attempts, BackoffCap).
	BackoffBase    time.Duration
	BackoffRate    float64
	BackoffCap     time.Duration
	MaxAge         time.Duration
	RequestTimeout time.Duration
	// SkipOnFailure lists providers that move past a failure. nil means
	// DefaultSkipOnFailure; an empty non-nil slice means none.
	SkipOnFailure []string
	// MailboxConcurrency is how many rows of one skip-on-failure mailbox
	// are delivered at once within its turn; strict mailboxes always
	// deliver one at a time, in order. A drainer has at most Workers x
	// MailboxConcurrency requests in flight.
	MailboxConcurrency   int
	BreakerFailures      int
	BreakerProbeInterval time.Duration
	Lease                time.Duration
	DeadLetterRetention  time.Duration
	// DeliveredRetention, when set, keeps delivered payloads that long
	// in the history (silo_delivered) instead of deleting them; 0 (the
	// default) deletes them on delivery.
	DeliveredRetention time.Duration

	// StopGrace is how long in-flight deliveries may finish (and be
	// recorded) after Run's ctx ends; then they are abandoned unrecorded
	// and their rows are delivered again later (at least once).
	StopGrace time.Duration
	// GaugeInterval is how often the depth and age gauges are refreshed.
	GaugeInterval time.Duration
	// PurgeInterval is how often old dead letters are purged.
	PurgeInterval time.Duration
	// ScanLimit bounds one backstop scan (DueMailboxes).
	ScanLimit int
	// ProbePath is requested on a region whose breaker is open
	// ["/_health/"]: any answer but 502/503/504 closes the breaker.
	ProbePath string

	// CallbackHosts are more hosts a response_url may name (the
	// callback_hosts option): "host" (any port, public addresses only) or
	// "host:port" (that port, private and loopback addresses too). See
	// callbackPolicy for the whole rule; CheckCallbackHost validates an
	// entry.
	CallbackHosts []string
	// CallbackAttempts bounds the POSTs of one region answer to its
	// response_url [DefaultCallbackAttempts].
	CallbackAttempts int
	// CallbackRetryDelay is the wait between them
	// [DefaultCallbackRetryDelay].
	CallbackRetryDelay time.Duration
	// CallbackRootCAs, when set, replaces the system's roots for the
	// TLS of response_url POSTs. It exists for tests (a real HTTPS peer
	// on loopback); no Caddyfile or JSON option reaches it.
	CallbackRootCAs *x509.CertPool

	// Transport carries deliveries and probes; nil means a shared
	// transport of our own. Redirects are never followed. The POSTs to
	// response_url always go through a guarded transport of their own.
	Transport http.RoundTripper
	// Now is the clock for everything recorded in the store; nil means
	// time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.ClaimSize <= 0 {
		c.ClaimSize = DefaultClaimSize
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = DefaultBackoffBase
	}
	if c.BackoffRate <= 0 {
		c.BackoffRate = DefaultBackoffRate
	}
	if c.BackoffCap <= 0 {
		c.BackoffCap = DefaultBackoffCap
	}
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.SkipOnFailure == nil {
		c.SkipOnFailure = DefaultSkipOnFailure()
	}
	if c.MailboxConcurrency <= 0 {
		c.MailboxConcurrency = DefaultMailboxConcurrency
	}
	if c.BreakerFailures <= 0 {
		c.BreakerFailures = DefaultBreakerFailures
	}
	if c.BreakerProbeInterval <= 0 {
		c.BreakerProbeInterval = DefaultBreakerProbeInterval
	}
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.DeadLetterRetention <= 0 {
		c.DeadLetterRetention = DefaultDeadLetterRetention
	}
	if c.StopGrace <= 0 {
		c.StopGrace = DefaultStopGrace
	}
	if c.GaugeInterval <= 0 {
		c.GaugeInterval = DefaultGaugeInterval
	}
	if c.PurgeInterval <= 0 {
		c.PurgeInterval = DefaultPurgeInterval
	}
	if c.ScanLimit <= 0 {
		c.ScanLimit = DefaultScanLimit
	}
	if c.CallbackAttempts <= 0 {
		c.CallbackAttempts = DefaultCallbackAttempts
	}
	if c.CallbackRetryDelay <= 0 {
		c.CallbackRetryDelay = DefaultCallbackRetryDelay
	}
	if c.ProbePath == "" {
		c.ProbePath = "/_health/"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// opTimeout bounds one store operation: a third of the lease, within 1 to
// 10 s.
func (c *Config) opTimeout() time.Duration {
	t := c.Lease / 3
	if t < time.Second {
		t = time.Second
	}
	if t > 10*time.Second {
		t = 10 * time.Second
	}
	return t
}
