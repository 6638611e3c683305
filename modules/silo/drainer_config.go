package silo

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/drain"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
)

// resolve checks the drainer block and fills in the values the drainer
// will use: the drain package's defaults (declared there only) for what
// is not set, so that the provisioned config shows them.
func (c *DrainerConfig) resolve() error {
	if c.Backoff == nil {
		c.Backoff = new(BackoffConfig)
	}
	if c.RegionBreaker == nil {
		c.RegionBreaker = new(BreakerConfig)
	}
	for name, v := range map[string]int64{
		"poll_interval": int64(c.PollInterval), "workers": int64(c.Workers), "claim_size": int64(c.ClaimSize),
		"max_attempts": int64(c.MaxAttempts), "backoff base": int64(c.Backoff.Base), "backoff cap": int64(c.Backoff.Cap),
		"max_age": int64(c.MaxAge), "request_timeout": int64(c.RequestTimeout),
		"region_breaker failures": int64(c.RegionBreaker.Failures), "region_breaker probe_interval": int64(c.RegionBreaker.ProbeInterval),
		"lease": int64(c.Lease), "dead_letter_retention": int64(c.DeadLetterRetention),
		"delivered_retention": int64(c.DeliveredRetention),
	} {
		if v < 0 {
			return fmt.Errorf("drainer %s: must not be negative", name)
		}
	}
	if c.Backoff.Rate != 0 && c.Backoff.Rate < 1 {
		return fmt.Errorf("drainer backoff rate %v: must be ≥ 1", c.Backoff.Rate)
	}
	c.fill(c.config("").WithDefaults())
	if c.Backoff.Cap < c.Backoff.Base {
		return fmt.Errorf("drainer backoff: cap %s is below base %s", time.Duration(c.Backoff.Cap), time.Duration(c.Backoff.Base))
	}
	for _, h := range c.CallbackHosts {
		if err := drain.CheckCallbackHost(h); err != nil {
			return fmt.Errorf("drainer %v", err)
		}
	}
	if err := checkSkipOnFailure(*c.SkipOnFailure); err != nil {
		return err
	}
	// A lease shorter than a delivery could lapse while the delivery runs,
	// letting a second drainer into the mailbox.
	if time.Duration(c.Lease) < 2*time.Second {
		return fmt.Errorf("drainer lease %s: must be at least 2s", time.Duration(c.Lease))
	}
	return nil
}

// fill sets every option to the value the drainer uses (eff).
func (c *DrainerConfig) fill(eff drain.Config) {
	c.PollInterval = caddy.Duration(eff.PollInterval)
	c.Workers = eff.Workers
	c.ClaimSize = eff.ClaimSize
	c.MaxAttempts = eff.MaxAttempts
	c.Backoff = &BackoffConfig{Base: caddy.Duration(eff.BackoffBase), Rate: eff.BackoffRate, Cap: caddy.Duration(eff.BackoffCap)}
	c.MaxAge = caddy.Duration(eff.MaxAge)
	c.RequestTimeout = caddy.Duration(eff.RequestTimeout)
	skip := eff.SkipOnFailure
	c.SkipOnFailure = &skip
	c.RegionBreaker = &BreakerConfig{Failures: eff.BreakerFailures, ProbeInterval: caddy.Duration(eff.BreakerProbeInterval)}
	c.Lease = caddy.Duration(eff.Lease)
	c.DeadLetterRetention = caddy.Duration(eff.DeadLetterRetention)
	c.DeliveredRetention = caddy.Duration(eff.DeliveredRetention)
}

// options names the drainer options that are set, `off` aside.
func (c *DrainerConfig) options() []string {
	var out []string
	for _, o := range []struct {
		name string
		set  bool
	}{
		{"poll_interval", c.PollInterval != 0},
		{"workers", c.Workers != 0},
		{"claim_size", c.ClaimSize != 0},
		{"max_attempts", c.MaxAttempts != 0},
		{"backoff", c.Backoff != nil},
		{"max_age", c.MaxAge != 0},
		{"request_timeout", c.RequestTimeout != 0},
		{"skip_on_failure", c.SkipOnFailure != nil},
		{"region_breaker", c.RegionBreaker != nil},
		{"lease", c.Lease != 0},
		{"dead_letter_retention", c.DeadLetterRetention != 0},
		{"delivered_retention", c.DeliveredRetention != 0},
	} {
		if o.set {
			out = append(out, o.name)
		}
	}
	return out
}

// warnUnusedDrainer logs the drainer options that do nothing. Not errors:
// `off` on some instances of a shared config, and the monolith mode of a
// multi-region Caddyfile, are legitimate.
func warnUnusedDrainer(logger *zap.Logger, tuned []string, off, control bool) {
	if logger == nil || len(tuned) == 0 || (!off && control) {
		return
	}
	why := "the drainer is off on this instance"
	if !control {
		why = "the mode is monolith, where the drainer does not run"
	}
	logger.Warn("sentry_silo: "+why+", so these drainer options do nothing: "+strings.Join(tuned, ", "),
		zap.Strings("unused_options", tuned))
}

// checkSkipOnFailure refuses provider names that no stored webhook has:
// a misspelt name would leave that provider's mailboxes strict.
func checkSkipOnFailure(providers []string) error {
	for i, p := range providers {
		if err := webhooks.CheckStored(p); err != nil {
			return fmt.Errorf("drainer skip_on_failure %s: %w", p, err)
		}
		if slices.Contains(providers[:i], p) {
			return fmt.Errorf("drainer skip_on_failure: %s is given twice", p)
		}
	}
	return nil
}

// config is the drainer block for the drain package, zero where it is not
// set (drain fills in its defaults). owner names the drainer in mailbox
// leases: each app gets its own (leaseOwner), since during a reload the old
// and the new drainer run side by side and must not share leases.
func (c *DrainerConfig) config(owner string) drain.Config {
	cfg := drain.Config{
		Owner:               owner,
		PollInterval:        time.Duration(c.PollInterval),
		Workers:             c.Workers,
		ClaimSize:           c.ClaimSize,
		MaxAttempts:         c.MaxAttempts,
		MaxAge:              time.Duration(c.MaxAge),
		RequestTimeout:      time.Duration(c.RequestTimeout),
		Lease:               time.Duration(c.Lease),
		DeadLetterRetention: time.Duration(c.DeadLetterRetention),
		DeliveredRetention:  time.Duration(c.DeliveredRetention),
		CallbackHosts:       c.CallbackHosts,
	}
	if c.Backoff != nil {
		cfg.BackoffBase, cfg.BackoffRate, cfg.BackoffCap = time.Duration(c.Backoff.Base), c.Backoff.Rate, time.Duration(c.Backoff.Cap)
	}
	if c.SkipOnFailure != nil {
		cfg.SkipOnFailure = *c.SkipOnFailure
	}
	if c.RegionBreaker != nil {
		cfg.BreakerFailures, cfg.BreakerProbeInterval = c.RegionBreaker.Failures, time.Duration(c.RegionBreaker.ProbeInterval)
	}
	return cfg
}

// leaseOwner names a drainer in mailbox leases: host and pid tell an
// operator which instance holds a mailbox, the random part tells apart the
// two configs of one process during a reload.
func leaseOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
