package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifyChannel is the LISTEN/NOTIFY channel; the payload is a mailbox.
const notifyChannel = "silo_mailbox"

// ErrListenDeaf is returned by Listen when its session did not hear a
// notification sent to it through the pool: something between this
// process and the server, a pooler in transaction mode such as PgBouncer,
// hands each statement whichever server connection is free, so the
// LISTEN stayed on a server connection nobody reads. The caller should
// poll, and ListenOn a direct connection fixes it.
var ErrListenDeaf = errors.New("store: the LISTEN session hears no notifications")

// Timings of the LISTEN session.
const (
	// listenProbeTimeout bounds the wait for the probe notification. On
	// a direct connection it arrives within a millisecond of its commit
	// (TestPostgresListenThroughPgBouncer); through a transaction pooler
	// it never does.
	listenProbeTimeout = 3 * time.Second
	// listenCheckEvery is how long a quiet session waits before it
	// checks that its server is there (it LISTENs again): a server whose
	// machine died sends no reset, and TCP keepalive (pgx dials with a
	// 5 min idle time, then 9 probes 75 s apart) would take 16 minutes to
	// notice; the pool and the backstop poll keep everything else going
	// meanwhile.
	listenCheckEvery = 30 * time.Second
	listenPingFor    = 5 * time.Second
)

// ListenOn makes Listen hold its LISTEN session on a connection of its
// own, opened with cfg, instead of on one taken from the pool: for a pool
// that goes through a pooler in transaction mode, cfg names the server
// directly.
func ListenOn(cfg *pgx.ConnConfig) PostgresOption {
	return func(p *Postgres) { p.listenCfg = cfg }
}

// Notify wakes the other instances' drainers for these mailboxes: one
// statement, one notification per mailbox, no WAL and so no fsync.
// InsertPayloads does not notify: a NOTIFY inside the insert's transaction
// would hold PostgreSQL's global notify lock across the commit's fsync and
// serialise every capture commit behind it. Callers notify after the
// commit instead (coalesced; a lost notification only costs the poll
// interval).
func (p *Postgres) Notify(ctx context.Context, mailboxes []string) error {
	if len(mailboxes) == 0 {
		return nil
	}
	// One row back, not one per mailbox: the answer is not read.
	_, err := p.pool.Exec(ctx, `SELECT count(pg_notify('`+notifyChannel+`', m)) FROM unnest($1::text[]) AS m`, mailboxes)
	return pgErr("postgres notify", err)
}

// Listen calls fn with each notified mailbox name until ctx ends, then
// returns ctx.Err(). Its session is a connection taken from the pool for
// as long as it lasts, or one of its own (ListenOn). Each session first
// proves that it hears: it sends a notification on a channel of its own
// through the pool, as Notify does, and waits for it; when none arrives,
// Listen returns ErrListenDeaf. A lost session (the server restarted, or
// failed over to another host of the DSN) is opened again with backoff
// (100ms doubling to 5s), followed by fn(""): wakes may have been missed,
// so the caller should look at every mailbox. fn runs on the listening
// goroutine and must not block.
func (p *Postgres) Listen(ctx context.Context, fn func(mailbox string)) error {
	backoff := 100 * time.Millisecond
	for first := true; ; first = false {
		listening, err := p.listenOnce(ctx, fn, !first)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrListenDeaf) {
			return err
		}
		if listening {
			backoff = 100 * time.Millisecond
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// listenOnce listens on one session until it fails or ctx ends. It
// reports whether the session had proved that it hears.
func (p *Postgres) listenOnce(ctx context.Context, fn func(string), reconnected bool) (listening bool, err error) {
	conn, done, err := p.listenSession(ctx)
	if err != nil {
		return false, err
	}
	defer done()
	if err := p.proveHearing(ctx, conn); err != nil {
		return false, err
	}
	// LISTEN is the session's last statement, and every liveness check
	// repeats it (a no-op on a channel already listened to): the
	// session shows as "LISTEN silo_mailbox" in pg_stat_activity.
	if _, err := conn.Exec(ctx, pgListen); err != nil {
		return false, err
	}
	if reconnected {
		fn("")
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, listenCheckEvery)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) || conn.IsClosed() {
				return true, err
			}
			// Quiet for a while: is the server still there? (A wait
			// that timed out leaves the connection usable.)
			pctx, cancel := context.WithTimeout(ctx, listenPingFor)
			_, err = conn.Exec(pctx, pgListen)
			cancel()
			if err != nil {
				return true, err
			}
			continue
		}
		if n.Channel == notifyChannel {
			fn(n.Payload)
		}
	}
}

// listenSession opens the session Listen holds: a connection of its own
// (ListenOn) or one from the pool. done hands it back clean: a pooled
// connection that still LISTENs would collect notifications nobody reads.
// If it cannot be cleaned (it broke, or ctx ended mid-read), it is closed
// instead.
func (p *Postgres) listenSession(ctx context.Context) (conn *pgx.Conn, done func(), err error) {
	closeConn := func(c *pgx.Conn) {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = c.Close(cctx)
		cancel()
	}
	if p.listenCfg != nil {
		c, err := pgx.ConnectConfig(ctx, p.listenCfg)
		if err != nil {
			return nil, nil, err
		}
		return c, func() { closeConn(c) }, nil
	}
	pc, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	return pc.Conn(), func() {
		raw := pc.Conn()
		if !raw.IsClosed() {
			uctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, uerr := raw.Exec(uctx, "UNLISTEN *")
			cancel()
			if uerr != nil {
				closeConn(pc.Hijack())
				return
			}
		}
		pc.Release()
	}, nil
}

// pgListen is the session's LISTEN.
const pgListen = "LISTEN " + notifyChannel

// proveHearing sends a notification on a channel of this session's own
// through the pool (the way Notify's reach the other instances) and waits
// for it. It runs before the session LISTENs to the mailboxes: wakes
// missed meanwhile are covered by the fn("") that follows a reconnection
// and, at the first session, by the drainer's first scan.
func (p *Postgres) proveHearing(ctx context.Context, conn *pgx.Conn) error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	probe := "silo_listen_probe_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "LISTEN "+probe); err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, `SELECT pg_notify($1, '')`, probe); err != nil {
		return pgErr("postgres listen probe", err)
	}
	wctx, cancel := context.WithTimeout(ctx, listenProbeTimeout)
	defer cancel()
	for {
		n, err := conn.WaitForNotification(wctx)
		switch {
		case err == nil && n.Channel == probe:
			_, err = conn.Exec(ctx, "UNLISTEN "+probe)
			return err
		case err == nil:
			// Not ours (a pooled session that listened before).
		case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("%w: LISTEN on %s heard nothing of a NOTIFY sent through %s within %s",
				ErrListenDeaf, describeDatabase(conn.Config()), p.where, listenProbeTimeout)
		default:
			return err
		}
	}
}
