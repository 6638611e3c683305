package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// PgBouncer is a real PgBouncer (the distribution's package) in front of a
// cluster, run as a child process with a config of its own in a temporary
// directory, on a reserved loopback port.
type PgBouncer struct {
	dir    string
	port   int
	hold   *os.File
	cmd    *exec.Cmd
	done   chan struct{}
	target *Cluster
}

// PgBouncerOptions tunes a PgBouncer.
type PgBouncerOptions struct {
	// PoolMode is session, transaction or statement [transaction]: in
	// transaction mode a client holds a server connection only for the
	// length of a transaction, so nothing of a session (prepared
	// statements, SET, LISTEN, session advisory locks) outlives it.
	PoolMode string
	// PoolSize is default_pool_size, the server connections per
	// database and user [20].
	PoolSize int
}

const pgbouncerHowToFix = `Fix: install PgBouncer (Debian: apt-get install pgbouncer; .ci/run does it when it is missing),
or run with -short to leave the PostgreSQL tests out on purpose.`

// findPgBouncer finds the pgbouncer binary on PATH or in /usr/sbin, where
// the Debian package puts it (not on a non-root PATH).
func findPgBouncer() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		return "/usr/sbin/pgbouncer", nil
	}
	return "", fmt.Errorf("pgbouncer not found on PATH nor in /usr/sbin")
}

// NewPgBouncer starts PgBouncer in front of target (every database, user
// postgres, auth_type trust) and stops it when the test ends. A test that
// needs it and cannot start it fails, saying how to fix that.
func NewPgBouncer(t testing.TB, target *Cluster, opts PgBouncerOptions) *PgBouncer {
	t.Helper()
	requireLong(t)
	b, err := startPgBouncer(target, opts)
	if err != nil {
		t.Fatalf("pgtest: cannot start PgBouncer: %v\n%s", err, pgbouncerHowToFix)
	}
	t.Cleanup(b.Stop)
	return b
}

func startPgBouncer(target *Cluster, opts PgBouncerOptions) (*PgBouncer, error) {
	bin, err := findPgBouncer()
	if err != nil {
		return nil, err
	}
	if opts.PoolMode == "" {
		opts.PoolMode = "transaction"
	}
	if opts.PoolSize == 0 {
		opts.PoolSize = 20
	}
	dir, err := os.MkdirTemp("", "silo-pgbouncer-")
	if err != nil {
		return nil, err
	}
	b := &PgBouncer{dir: dir, target: target, done: make(chan struct{})}
	b.hold, b.port, err = reservePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// auth_type trust still wants the user in auth_file. The console
	// (database pgbouncer) is open to postgres, for tests that look at
	// SHOW POOLS. server_reset_query is left empty as in every
	// transaction-mode deployment: nothing resets a server connection
	// between two clients, so a session setting left behind leaks.
	conf := fmt.Sprintf(`[databases]
* = host=127.0.0.1 port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
admin_users = postgres
pool_mode = %s
default_pool_size = %d
max_client_conn = 1000
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = %s
pidfile = %s
`, target.port, b.port, filepath.Join(dir, "userlist.txt"), opts.PoolMode, opts.PoolSize, b.LogPath(), filepath.Join(dir, "pgbouncer.pid"))
	if err := os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(`"postgres" ""`+"\n"), 0o644); err != nil {
		b.Stop()
		return nil, err
	}
	ini := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(ini, []byte(conf), 0o644); err != nil {
		b.Stop()
		return nil, err
	}
	// PgBouncer refuses to run as root, like PostgreSQL.
	if target.asUser != "" {
		if err := exec.Command("chown", "-R", target.asUser, dir).Run(); err != nil {
			b.Stop()
			return nil, fmt.Errorf("chown %s: %v", dir, err)
		}
		b.cmd = exec.Command("runuser", "-u", target.asUser, "--", bin, ini)
	} else {
		b.cmd = exec.Command(bin, ini)
	}
	// Its own process group, so that Stop reaches PgBouncer through
	// runuser.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		b.Stop()
		return nil, err
	}
	defer out.Close()
	b.cmd.Stdout, b.cmd.Stderr = out, out
	if err := b.cmd.Start(); err != nil {
		b.Stop()
		return nil, err
	}
	go func() {
		_ = b.cmd.Wait()
		close(b.done)
	}()
	b.reapWithParent()
	// Ready once it accepts connections.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := poll(ctx, func() (bool, error) {
		select {
		case <-b.done:
			stderr, _ := os.ReadFile(out.Name())
			return false, fmt.Errorf("pgbouncer exited: %s %s", stderr, b.log())
		default:
		}
		conn, err := net.DialTimeout("tcp", b.Addr(), time.Second)
		if err != nil {
			return false, err
		}
		conn.Close()
		return true, nil
	}); err != nil {
		b.Stop()
		return nil, fmt.Errorf("pgbouncer did not listen on %s: %v\n%s", b.Addr(), err, b.log())
	}
	return b, nil
}

// Addr is PgBouncer's host:port.
func (b *PgBouncer) Addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }

// DSN is a DSN of the same database as dsn (a DSN on the target cluster),
// through PgBouncer.
func (b *PgBouncer) DSN(t testing.TB, dsn string) string {
	t.Helper()
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", b.Addr(), DatabaseName(t, dsn))
}

// LogPath is PgBouncer's log file.
func (b *PgBouncer) LogPath() string { return filepath.Join(b.dir, "pgbouncer.log") }

func (b *PgBouncer) log() string {
	data, _ := os.ReadFile(b.LogPath())
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// Stop ends PgBouncer (SIGINT: a safe shutdown) and removes its files.
func (b *PgBouncer) Stop() {
	if b.cmd != nil && b.cmd.Process != nil {
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
			<-b.done
		}
	}
	if b.hold != nil {
		b.hold.Close()
	}
	os.RemoveAll(b.dir)
}

// reapWithParent ends PgBouncer when this process dies, however it dies.
func (b *PgBouncer) reapWithParent() {
	script := fmt.Sprintf("while kill -0 %d 2>/dev/null; do sleep 1; done; kill -INT -- -%d 2>/dev/null; rm -rf %s",
		os.Getpid(), b.cmd.Process.Pid, b.dir)
	cmd := exec.Command("sh", "-c", script)
	if err := cmd.Start(); err == nil {
		go func() { _ = cmd.Wait() }()
	}
}
