package silo

import (
	"context"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

type fakeWaker struct {
	mu       sync.Mutex
	calls    [][]string
	notified chan struct{} // one signal per Notify, when not nil
}

func (f *fakeWaker) Notify(_ context.Context, m []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := append([]string(nil), m...)
	sort.Strings(c)
	f.calls = append(f.calls, c)
	if f.notified != nil {
		f.notified <- struct{}{}
	}
	return nil
}

func (f *fakeWaker) Listen(ctx context.Context, _ func(string)) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestNotifierCoalesces: wakes queued while no NOTIFY is running go out
// together, each mailbox once, and add never blocks.
func TestNotifierCoalesces(t *testing.T) {
	w := &fakeWaker{notified: make(chan struct{}, 8)}
	n := newNotifier(w, zap.NewNop())
	n.add([]string{"github:us:1", "gitlab:de:2"})
	n.add([]string{"github:us:1"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.run(ctx); close(done) }()
	select {
	case <-w.notified:
	case <-time.After(5 * time.Second): // the check below says what is wrong
	}
	cancel()
	<-done
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.calls) != 1 || strings.Join(w.calls[0], ",") != "github:us:1,gitlab:de:2" {
		t.Fatalf("notify calls = %v, want one with each mailbox once", w.calls)
	}
}
