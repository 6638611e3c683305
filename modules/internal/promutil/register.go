// Package promutil registers collectors in Caddy's per-config metrics
// registry without panicking on reloads or on a module used twice in one
// config.
package promutil

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns the collector that is
// registered: c itself, or the one already registered under the same
// descriptor (so two handler instances of one config share counters).
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
