package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Streaming replication for the failover and replica tests: a standby
// built from its primary with pg_basebackup -R (standby.signal and
// primary_conninfo written by pg_basebackup itself), synchronous or not,
// promoted with pg_ctl promote, and a primary that dies as a machine does
// (SIGKILL to every one of its processes at once).

// StandbyOptions tunes a standby.
type StandbyOptions struct {
	// Synchronous names the standby in the primary's
	// synchronous_standby_names, with synchronous_commit on: a commit
	// returns once the standby has flushed it. Without it the standby is
	// asynchronous: a commit returns once the primary has it, and what the
	// standby had not received when the primary died is lost.
	Synchronous bool
}

// NewStandby builds a hot standby of c on a port of its own, starts it and
// waits until it streams from c (and, when Synchronous, until c counts it
// as its synchronous standby). It is removed when the test ends.
func (c *Cluster) NewStandby(t testing.TB, opts StandbyOptions) *Cluster {
	t.Helper()
	s, err := c.startStandby(opts)
	if err != nil {
		t.Fatalf("pgtest: cannot start a standby: %v\n%s", err, howToFix)
	}
	t.Cleanup(s.Destroy)
	return s
}

func (c *Cluster) startStandby(opts StandbyOptions) (*Cluster, error) {
	s, err := newCluster()
	if err != nil {
		return nil, err
	}
	s.name = fmt.Sprintf("standby_%d", time.Now().UnixNano())
	// -X stream copies the WAL written during the backup; -R writes
	// standby.signal and primary_conninfo; --no-sync because the tests
	// run with fsync off anyway.
	if err := s.run(filepath.Join(s.bin, "pg_basebackup"), "-D", s.data(), "-h", "127.0.0.1", "-p", strconv.Itoa(c.port),
		"-U", "postgres", "-X", "stream", "-R", "--no-sync", "-c", "fast"); err != nil {
		s.Destroy()
		return nil, err
	}
	// The walreceiver reports cluster_name as its application_name,
	// which is what synchronous_standby_names matches.
	if err := s.configureAndStart(Options{}, map[string]string{"cluster_name": "'" + s.name + "'", "hot_standby": "on"}); err != nil {
		s.Destroy()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if opts.Synchronous {
		if err := c.exec(ctx, fmt.Sprintf(`ALTER SYSTEM SET synchronous_standby_names = '"%s"'`, s.name),
			`ALTER SYSTEM SET synchronous_commit = 'on'`, `SELECT pg_reload_conf()`); err != nil {
			s.Destroy()
			return nil, err
		}
	}
	want := "async"
	if opts.Synchronous {
		want = "sync"
	}
	if err := poll(ctx, func() (bool, error) {
		var state, sync string
		err := c.queryRow(ctx, `SELECT state, sync_state FROM pg_stat_replication WHERE application_name = $1`, []any{s.name}, &state, &sync)
		if err == pgx.ErrNoRows {
			return false, nil
		}
		return err == nil && state == "streaming" && sync == want, err
	}); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("standby %s never streamed as %s: %v\n%s", s.name, want, err, s.serverLog())
	}
	return s, nil
}

// Kill ends the server as a crash of its machine would: every process of
// it stops at once (SIGSTOP), then all get SIGKILL. Each backend is the
// leader of a process group of its own (PostgreSQL's InitPostmasterChild
// calls setsid), so a SIGKILL to the postmaster's group alone left the
// backends running: one answered a COMMIT 13ms after it. Clients see
// their connections reset; the data directory is left as a crash leaves
// it.
func (c *Cluster) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	pid := c.ServerPID()
	if !c.running || pid == 0 {
		return fmt.Errorf("pgtest: the server is not running")
	}
	// The postmaster first, so that it forks nothing more.
	if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("pgtest: stop the server's process group %d: %w", pid, err)
	}
	procs := append([]int{pid}, childrenOf(pid)...)
	for _, p := range procs[1:] {
		_ = syscall.Kill(-p, syscall.SIGSTOP)
		_ = syscall.Kill(p, syscall.SIGSTOP)
	}
	c.killedAt = time.Now()
	for _, p := range procs {
		_ = syscall.Kill(-p, syscall.SIGKILL)
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	c.running = false
	// Wait for every process to be reaped, so the port refuses and the
	// data directory can be started again (a new postmaster refuses to
	// start while the old PID exists, even as a zombie). Reaping is up to
	// whoever adopted the postmaster from pg_ctl: up to 1.9s here, which
	// is why KilledAt, not Kill's return, is the moment of the crash.
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range procs {
		for syscall.Kill(p, 0) == nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("pgtest: process %d of the server survived SIGKILL for 10s", p)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// KilledAt is when the last Kill had stopped every process of the
// server: nothing of it ran after that.
func (c *Cluster) KilledAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.killedAt
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// Promote turns a standby into a primary (pg_ctl promote) and returns once
// it accepts writes.
func (c *Cluster) Promote() error {
	if err := c.run(filepath.Join(c.bin, "pg_ctl"), "-D", c.data(), "-w", "-t", "60", "promote"); err != nil {
		return fmt.Errorf("%w\n%s", err, c.serverLog())
	}
	return nil
}

// PauseReplay stops a standby from applying the WAL it receives
// (pg_wal_replay_pause): it keeps answering reads, frozen at what it had
// applied, and falls behind its primary by every later commit.
func (c *Cluster) PauseReplay() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.exec(ctx, `SELECT pg_wal_replay_pause()`); err != nil {
		return err
	}
	return poll(ctx, func() (bool, error) {
		var state string
		err := c.queryRow(ctx, `SELECT pg_get_wal_replay_pause_state()`, nil, &state)
		return state == "paused", err
	})
}

// ResumeReplay undoes PauseReplay.
func (c *Cluster) ResumeReplay() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.exec(ctx, `SELECT pg_wal_replay_resume()`)
}

// WaitReplayed waits until the standby s has applied everything its
// primary c has written so far.
func (c *Cluster) WaitReplayed(s *Cluster) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var target string
	if err := c.queryRow(ctx, `SELECT pg_current_wal_lsn()::text`, nil, &target); err != nil {
		return err
	}
	return poll(ctx, func() (bool, error) {
		var done bool
		err := s.queryRow(ctx, `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn`, []any{target}, &done)
		return done, err
	})
}

// DatabaseURL is the URL of database db on this cluster.
func (c *Cluster) DatabaseURL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// MultiHostURL names database db on every cluster, in order, as one pgx
// URL (host=a,b); extra are more URL parameters (target_session_attrs,
// say).
func MultiHostURL(db string, extra url.Values, clusters ...*Cluster) string {
	hosts := make([]string, len(clusters))
	for i, c := range clusters {
		hosts[i] = "127.0.0.1:" + strconv.Itoa(c.port)
	}
	q := url.Values{"sslmode": {"disable"}}
	for k, v := range extra {
		q[k] = v
	}
	return "postgres://postgres@" + strings.Join(hosts, ",") + "/" + db + "?" + q.Encode()
}

// DatabaseName is the database a DSN from DSN or Cluster.DSN names.
func DatabaseName(t testing.TB, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("pgtest: %s is not a URL: %v", redact(dsn), err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// exec runs statements on the cluster's postgres database.
func (c *Cluster) exec(ctx context.Context, statements ...string) error {
	conn, err := pgx.Connect(ctx, c.AdminURL())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, s := range statements {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

func (c *Cluster) queryRow(ctx context.Context, sql string, args []any, dest ...any) error {
	conn, err := pgx.Connect(ctx, c.AdminURL())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, sql, args...).Scan(dest...)
}

// poll calls cond every 20ms until it is true, fails for good, or ctx
// ends; errors before that count as "not yet" (a server starting).
func poll(ctx context.Context, cond func() (bool, error)) error {
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
