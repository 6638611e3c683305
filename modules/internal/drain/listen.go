package drain

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// listener is the optional part of a Store that hears of the payloads
// other instances store (PostgreSQL LISTEN/NOTIFY: store.Waker's Listen).
// Listen calls fn with each notified mailbox name until ctx ends, and
// fn("") when wakes may have been missed. The drainer listens when its
// store has it; without it, other instances' captures are found by the
// backstop scan.
type listener interface {
	Listen(ctx context.Context, fn func(mailbox string)) error
}

// listen wakes the drainer for payloads other instances store,
// reconnecting with backoff, until ctx ends.
func listen(ctx context.Context, l listener, wake func(mailboxes ...string), warn *limitedLog) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		started := time.Now()
		err := l.Listen(ctx, func(mailbox string) {
			if mailbox == "" {
				wake()
				return
			}
			wake(mailbox)
		})
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		warn.warn("listen", "listening for wakes failed; polling meanwhile", zap.Error(err))
		wake() // wakes may have been missed
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}
