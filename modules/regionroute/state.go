package regionroute

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// regionStates holds each region's concurrency cap and breaker across
// handler instances and reloads: requests still streaming from the old
// config count against the new config's cap, a region found broken stays
// broken through a reload, and two sites routing to one region share one
// cap. Keyed by everything that shapes the state, so a changed setting
// starts afresh.
var regionStates = caddy.NewUsagePool()

type regionState struct {
	limit   limiter
	breaker breaker
}

func (*regionState) Destruct() error { return nil }

func stateKey(name, gateway string, maxConcurrency, failures int, window time.Duration) string {
	return fmt.Sprintf("%s|%s|%d|%d|%s", name, gateway, maxConcurrency, failures, window)
}

func acquireState(key string, maxConcurrency, failures int, window time.Duration) (*regionState, error) {
	v, _, err := regionStates.LoadOrNew(key, func() (caddy.Destructor, error) {
		s := &regionState{}
		s.limit.max = int64(maxConcurrency)
		s.breaker.max = int64(failures)
		s.breaker.window = int64(window)
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*regionState), nil
}
