package drain

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// listener is the optional part of a Store that hears of the payloads
// other instances store (PostgreSQL LISTEN/NOTIFY: store.Postgres's
// Listen). Listen calls fn with each notified mailbox name until ctx
// ends, and fn("") when wakes may have been missed; it returns
// store.ErrListenDeaf when its session cannot hear (a pooler in
// transaction mode). The drainer listens when its store has it; without
// it, other instances' captures are found by the backstop scan.
type listener interface {
	Listen(ctx context.Context, fn func(mailbox string)) error
}

// deafRecheck is how long the drainer polls before it tries LISTEN again
// after it proved deaf: a pooler does not go away by itself, but a probe
// that lost a race with a slow server must not cost wakes for ever.
const deafRecheck = 5 * time.Minute

// listen wakes the drainer for payloads other instances store,
// reconnecting with backoff, until ctx ends. A session that cannot hear
// is reported once, with the fix, and the drainer relies on its backstop
// poll meanwhile.
func listen(ctx context.Context, l listener, wake func(mailboxes ...string), warn *limitedLog) {
	backoff := 100 * time.Millisecond
	deaf := false
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
		var wait time.Duration
		if errors.Is(err, store.ErrListenDeaf) {
			if !deaf {
				warn.log.Warn("LISTEN hears no notifications on this connection; other instances' captures are found by the poll only (poll_interval)",
					zap.Error(err),
					zap.String("fix", "the storage DSN goes through a pooler in transaction mode (PgBouncer): set listen_dsn to a direct connection to the database"))
			}
			deaf, wait = true, deafRecheck
		} else {
			deaf = false
			if time.Since(started) > time.Minute {
				backoff = 100 * time.Millisecond
			}
			warn.warn("listen", "listening for wakes failed; polling meanwhile", zap.Error(err))
			wait, backoff = backoff, min(backoff*2, 30*time.Second)
		}
		wake() // wakes may have been missed
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
