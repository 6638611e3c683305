package silo

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/sentrysilo/caddy-silo/modules/internal/drain"
)

// unmarshalCaddyfile reads the drainer block, one small function per
// option (drainerOptions).
func (c *DrainerConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	given := map[string]bool{}
	for n := d.Nesting(); d.NextBlock(n); {
		opt := d.Val()
		parse, ok := drainerOptions[opt]
		if !ok {
			return d.Errf("unrecognized drainer option %q", opt)
		}
		if given[opt] && opt != "callback_hosts" { // callback_hosts lines add up
			// A second line would silently replace the first.
			return d.Errf("drainer %s is given twice", opt)
		}
		given[opt] = true
		if err := parse(d, c); err != nil {
			return err
		}
	}
	return nil
}

// drainerOptionParser reads one drainer option (the dispenser is on its
// name) into c.
type drainerOptionParser func(d *caddyfile.Dispenser, c *DrainerConfig) error

var drainerOptions = map[string]drainerOptionParser{
	"off": func(d *caddyfile.Dispenser, c *DrainerConfig) error {
		if d.NextArg() {
			return d.ArgErr()
		}
		c.Off = true
		return nil
	},
	"poll_interval":         durationOption(func(c *DrainerConfig) *caddy.Duration { return &c.PollInterval }),
	"workers":               positiveOption(func(c *DrainerConfig) *int { return &c.Workers }),
	"claim_size":            positiveOption(func(c *DrainerConfig) *int { return &c.ClaimSize }),
	"max_attempts":          positiveOption(func(c *DrainerConfig) *int { return &c.MaxAttempts }),
	"backoff":               parseBackoff,
	"max_age":               durationOption(func(c *DrainerConfig) *caddy.Duration { return &c.MaxAge }),
	"request_timeout":       durationOption(func(c *DrainerConfig) *caddy.Duration { return &c.RequestTimeout }),
	"skip_on_failure":       parseSkipOnFailure,
	"region_breaker":        parseRegionBreaker,
	"lease":                 durationOption(func(c *DrainerConfig) *caddy.Duration { return &c.Lease }),
	"dead_letter_retention": durationOption(func(c *DrainerConfig) *caddy.Duration { return &c.DeadLetterRetention }),
	"callback_hosts":        parseCallbackHosts,
	"delivered_retention":   durationOption(func(c *DrainerConfig) *caddy.Duration { return &c.DeliveredRetention }),
}

func durationOption(field func(c *DrainerConfig) *caddy.Duration) drainerOptionParser {
	return func(d *caddyfile.Dispenser, c *DrainerConfig) (err error) {
		*field(c), err = oneDuration(d)
		return err
	}
}

func positiveOption(field func(c *DrainerConfig) *int) drainerOptionParser {
	return func(d *caddyfile.Dispenser, c *DrainerConfig) (err error) {
		*field(c), err = onePositiveInt(d)
		return err
	}
}

func parseBackoff(d *caddyfile.Dispenser, c *DrainerConfig) error {
	args := d.RemainingArgs()
	if len(args) != 3 {
		return d.Err("backoff needs <base> <rate> <cap>, e.g. backoff 3m 1.4 60m")
	}
	b := new(BackoffConfig)
	var err error
	if b.Base, err = parseDuration(d, "backoff base", args[0]); err != nil {
		return err
	}
	if b.Rate, err = strconv.ParseFloat(args[1], 64); err != nil || b.Rate < 1 {
		return d.Errf("backoff rate %q must be a number ≥ 1", args[1])
	}
	if b.Cap, err = parseDuration(d, "backoff cap", args[2]); err != nil {
		return err
	}
	c.Backoff = b
	return nil
}

func parseSkipOnFailure(d *caddyfile.Dispenser, c *DrainerConfig) error {
	// No providers means none skip: every mailbox is strict. An empty
	// list, not nil, so the JSON keeps [] and does not fall back to the
	// default list.
	providers := d.RemainingArgs()
	if providers == nil {
		providers = []string{}
	}
	if err := checkSkipOnFailure(providers); err != nil {
		return d.Err(err.Error())
	}
	c.SkipOnFailure = &providers
	return nil
}

func parseRegionBreaker(d *caddyfile.Dispenser, c *DrainerConfig) error {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return d.Err("region_breaker needs <failures> <probe_interval>, e.g. region_breaker 5 10s")
	}
	b := new(BreakerConfig)
	var err error
	if b.Failures, err = strconv.Atoi(args[0]); err != nil || b.Failures <= 0 {
		return d.Errf("region_breaker failures %q must be a positive integer", args[0])
	}
	if b.ProbeInterval, err = parseDuration(d, "region_breaker probe_interval", args[1]); err != nil {
		return err
	}
	c.RegionBreaker = b
	return nil
}

func parseCallbackHosts(d *caddyfile.Dispenser, c *DrainerConfig) error {
	hosts := d.RemainingArgs()
	if len(hosts) == 0 {
		return d.Err("callback_hosts needs at least one host or host:port, e.g. callback_hosts chat.example.com:443")
	}
	for _, h := range hosts {
		if err := drain.CheckCallbackHost(h); err != nil {
			return d.Errf("%v", err)
		}
	}
	c.CallbackHosts = append(c.CallbackHosts, hosts...)
	return nil
}
