package silo

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// notifier tells the other instances' drainers about new payloads through
// the store (PostgreSQL NOTIFY), after the capture's commit rather than
// inside it: a NOTIFY in the insert's transaction holds PostgreSQL's global
// notify lock across the commit's fsync and serialises every capture. Wakes
// are coalesced, so a burst of captures costs one NOTIFY statement, and
// statements are at least notifyInterval apart: under load every group
// commit would otherwise cost one more statement on the database the
// captures are waiting for. A lost notification costs at most the
// drainer's poll interval.
type notifier struct {
	waker  mailboxNotifier
	logger *zap.Logger

	mu      sync.Mutex
	pending map[string]struct{}
	kick    chan struct{}
}

// notifyInterval is the least time between two NOTIFY statements: what it
// adds to another instance's capture-to-delivery latency at most. At 5 ms
// the statements (~90 µs of Caddy CPU each, 200 a second under load) were
// 3.2 µs of every stored webhook's CPU at 5,650 captures/s (CPU profile of
// the bench's open loop); 20 ms is a quarter of that, against delivery
// latencies of tens of milliseconds and a drainer poll of seconds.
const notifyInterval = 20 * time.Millisecond

// mailboxNotifier sends the notifications (PostgreSQL's NOTIFY).
type mailboxNotifier interface {
	Notify(ctx context.Context, mailboxes []string) error
}

func newNotifier(w mailboxNotifier, logger *zap.Logger) *notifier {
	return &notifier{waker: w, logger: logger, pending: map[string]struct{}{}, kick: make(chan struct{}, 1)}
}

// add queues mailboxes; it never blocks the request path.
func (n *notifier) add(mailboxes []string) {
	n.mu.Lock()
	for _, m := range mailboxes {
		n.pending[m] = struct{}{}
	}
	n.mu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// run sends the queued mailboxes until ctx ends.
func (n *notifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
		}
		n.mu.Lock()
		batch := make([]string, 0, len(n.pending))
		for m := range n.pending {
			batch = append(batch, m)
		}
		clear(n.pending)
		n.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.waker.Notify(nctx, batch)
		cancel()
		if err != nil && ctx.Err() == nil {
			if c := n.logger.Check(zapcore.DebugLevel, "notifying other instances failed; their poll will find the payloads"); c != nil {
				c.Write(zap.Error(err), zap.Int("mailboxes", len(batch)))
			}
		}
		t := time.NewTimer(notifyInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
