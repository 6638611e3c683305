package drain

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// deafListener is a store whose LISTEN session cannot hear.
type deafListener struct{ calls atomic.Int64 }

func (l *deafListener) Listen(ctx context.Context, fn func(string)) error {
	l.calls.Add(1)
	return fmt.Errorf("%w: through a pooler", store.ErrListenDeaf)
}

// A LISTEN session that cannot hear is reported once, with the fix, and
// the drainer polls instead of reconnecting in a loop.
func TestListenDeafFallsBackToPolling(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	l := &deafListener{}
	var wakes atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		listen(ctx, l, func(...string) { wakes.Add(1) }, newLimitedLog(zap.New(core)))
	}()
	waitFor(t, "the deaf listener's wake", 5*time.Second, func() bool { return wakes.Load() > 0 })
	cancel()
	<-done
	if n := l.calls.Load(); n != 1 {
		t.Errorf("Listen called %d times, want once (then the poll, for %s)", n, deafRecheck)
	}
	warnings := logs.FilterLevelExact(zap.WarnLevel).All()
	if len(warnings) != 1 || !strings.Contains(fmt.Sprint(warnings[0].ContextMap()), "listen_dsn") {
		t.Fatalf("warnings %v, want one naming listen_dsn", warnings)
	}
}
