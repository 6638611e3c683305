// Package pgtest gives tests a real PostgreSQL: SILO_TEST_DATABASE_URL when
// it is set, otherwise a throwaway cluster built with the machine's initdb
// and pg_ctl (run as the postgres user when the tests run as root). A test
// that needs PostgreSQL and cannot get one fails with a message saying how to
// fix it; it never skips, except under -short.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable that points the tests at an existing server. The
// role in it must be allowed to CREATE DATABASE.
const EnvURL = "SILO_TEST_DATABASE_URL"

var (
	sharedOnce sync.Once
	shared     *Cluster
	sharedErr  error
)

// DSN returns the DSN of a new, empty database, on SILO_TEST_DATABASE_URL's
// server or on a cluster shared by the whole test process.
func DSN(t testing.TB) string {
	t.Helper()
	requireLong(t)
	if base := os.Getenv(EnvURL); base != "" {
		return createDatabase(t, base)
	}
	sharedOnce.Do(func() {
		shared, sharedErr = startCluster(Options{})
	})
	if sharedErr != nil {
		t.Fatalf("pgtest: no PostgreSQL for this test: %v\n%s", sharedErr, howToFix)
	}
	return createDatabase(t, shared.AdminURL())
}

const howToFix = `Fix: set SILO_TEST_DATABASE_URL to a PostgreSQL URL whose role may CREATE DATABASE,
or install PostgreSQL so that initdb and pg_ctl are on PATH or under /usr/lib/postgresql/*/bin
(Debian: apt-get install postgresql). Run with -short to leave PostgreSQL tests out on purpose.`

func requireLong(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL; left out under -short")
	}
}

// Options tunes a cluster.
type Options struct {
	// Durable keeps fsync on, for benchmarks that must measure real
	// commits. Tests run with fsync off: commits keep their semantics,
	// only the disk flush is skipped.
	Durable bool
	// Settings are extra postgresql.conf settings (name → value).
	Settings map[string]string
}

// Cluster is a throwaway PostgreSQL cluster on loopback.
type Cluster struct {
	dir     string
	bin     string
	port    int
	hold    *os.File // keeps port reserved, through Stop and Start too
	asUser  string   // "" or "postgres" when running as root
	name    string   // cluster_name of a standby ("" for a primary)
	mu      sync.Mutex
	running bool
	// killedAt is when Kill had stopped every process of the server.
	killedAt time.Time
}

// NewCluster starts a cluster of the test's own, for tests that stop and
// start the server (outages). It is removed when the test ends.
func NewCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	requireLong(t)
	c, err := startCluster(opts)
	if err != nil {
		t.Fatalf("pgtest: cannot start a PostgreSQL cluster: %v\n%s", err, howToFix)
	}
	t.Cleanup(c.Destroy)
	return c
}

// StartCluster starts a cluster for programs that are not tests (the bench
// harness). The caller must Destroy it.
func StartCluster(opts Options) (*Cluster, error) { return startCluster(opts) }

// AdminURL is the URL of the cluster's postgres database.
func (c *Cluster) AdminURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// DSN creates a new database on this cluster and returns its DSN.
func (c *Cluster) DSN(t testing.TB) string {
	t.Helper()
	return createDatabase(t, c.AdminURL())
}

// Port is the TCP port the cluster listens on.
func (c *Cluster) Port() int { return c.port }

// Stop stops the server (fast shutdown), keeping its data.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return nil
	}
	c.running = false
	return c.run(filepath.Join(c.bin, "pg_ctl"), "-D", c.data(), "-m", "fast", "-w", "stop")
}

// Start starts a stopped server again on the same port.
func (c *Cluster) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return nil
	}
	if err := c.run(filepath.Join(c.bin, "pg_ctl"), "-D", c.data(), "-l", c.LogPath(), "-w", "-t", "60", "start"); err != nil {
		return fmt.Errorf("%w\n%s", err, c.serverLog())
	}
	c.running = true
	return nil
}

// Destroy stops the server at once and removes its files.
func (c *Cluster) Destroy() {
	c.mu.Lock()
	if c.running {
		_ = c.run(filepath.Join(c.bin, "pg_ctl"), "-D", c.data(), "-m", "immediate", "-w", "stop")
		c.running = false
	}
	c.mu.Unlock()
	_ = os.RemoveAll(c.dir)
	if c.hold != nil {
		c.hold.Close()
	}
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

// LogPath is the server's log file (warnings and errors), for programs
// that count what the server reported.
func (c *Cluster) LogPath() string { return filepath.Join(c.dir, "server.log") }

func (c *Cluster) serverLog() string {
	b, _ := os.ReadFile(c.LogPath())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (c *Cluster) run(name string, args ...string) error {
	var cmd *exec.Cmd
	if c.asUser != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.asUser, "--", name}, args...)...)
	} else {
		cmd = exec.Command(name, args...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func startCluster(opts Options) (*Cluster, error) {
	c, err := newCluster()
	if err != nil {
		return nil, err
	}
	if err := c.run(filepath.Join(c.bin, "initdb"), "-D", c.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		c.Destroy()
		return nil, err
	}
	if err := c.configureAndStart(opts, nil); err != nil {
		c.Destroy()
		return nil, err
	}
	return c, nil
}

// newCluster makes the directory of a cluster that has no data yet, owned
// by the user the server will run as.
func newCluster() (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin}
	if u, err := user.Current(); err == nil && u.Uid == "0" {
		// initdb refuses to run as root.
		if _, err := user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("running as root and there is no postgres user to run initdb as")
		}
		c.asUser = "postgres"
	}
	dir, err := os.MkdirTemp("", "silo-pg-")
	if err != nil {
		return nil, err
	}
	c.dir = dir
	if c.asUser != "" {
		if err := exec.Command("chown", "-R", c.asUser, dir).Run(); err != nil {
			c.Destroy()
			return nil, fmt.Errorf("chown %s: %v", dir, err)
		}
		_ = os.Chmod(dir, 0o755)
	}
	return c, nil
}

// configureAndStart reserves the cluster's port, appends its settings to
// the data directory's postgresql.conf (the last setting of a name wins,
// so a standby's override what it copied from its primary) and starts it.
func (c *Cluster) configureAndStart(opts Options, extra map[string]string) error {
	var err error
	c.hold, c.port, err = reservePort()
	if err != nil {
		return err
	}
	settings := map[string]string{
		"listen_addresses":        "'127.0.0.1'",
		"port":                    strconv.Itoa(c.port),
		"unix_socket_directories": "'" + c.dir + "'",
		"max_connections":         "300",
		"shared_buffers":          "128MB",
		"log_min_messages":        "warning",
	}
	if !opts.Durable {
		settings["fsync"] = "off"
		settings["full_page_writes"] = "off"
	}
	for _, m := range []map[string]string{opts.Settings, extra} {
		for k, v := range m {
			settings[k] = v
		}
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var conf strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&conf, "%s = %s\n", k, settings[k])
	}
	f, err := os.OpenFile(filepath.Join(c.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(conf.String())
	f.Close()
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	c.reapWithParent()
	return nil
}

// reapWithParent starts a watcher that removes the cluster when this
// process dies, however it dies: tests that panic, time out or are killed
// must not leave servers behind on a CI machine.
func (c *Cluster) reapWithParent() {
	stop := fmt.Sprintf("%s -D %s -m immediate -w stop", filepath.Join(c.bin, "pg_ctl"), c.data())
	if c.asUser != "" {
		stop = "runuser -u " + c.asUser + " -- " + stop
	}
	script := fmt.Sprintf("while kill -0 %d 2>/dev/null; do sleep 1; done; %s >/dev/null 2>&1; rm -rf %s", os.Getpid(), stop, c.dir)
	cmd := exec.Command("sh", "-c", script)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, nil
	_ = cmd.Start()
	go func() { _ = cmd.Wait() }()
}

func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		// A symlink on PATH (/usr/local/bin/initdb) points at the
		// directory that has the other programs too (pg_basebackup).
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "pg_ctl")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", fmt.Errorf("initdb not found on PATH nor under /usr/lib/postgresql/*/bin")
	}
	sort.Strings(matches)
	return filepath.Dir(matches[len(matches)-1]), nil
}

// reservePort reserves a port on 127.0.0.1 for the cluster's life.
//
// PostgreSQL cannot inherit a listening socket, so the port must be named
// in its config and bound by the server itself; a port taken by closing a
// listener is handed by the kernel to the next listen(:0) or outgoing
// connection that asks (go test ./... runs packages in parallel). Instead,
// a socket stays bound to the port without ever listening, with
// SO_REUSEADDR: the kernel never hands a bound port to listen(:0) or to an
// outgoing connection, and Linux lets another SO_REUSEADDR socket bind and
// listen next to a bound one that does not listen; the postmaster sets
// SO_REUSEADDR on its sockets. So the server can bind the port (and bind
// it again after Stop and Start) while nothing that asks the kernel for a
// port can get it. The socket takes no connections: a stopped server's
// port refuses them, as it would in production.
func reservePort() (*os.File, int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("reserve a port: %w", err)
	}
	f := os.NewFile(uintptr(fd), "port reservation")
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("reserve a port: SO_REUSEADDR: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("reserve a port: bind 127.0.0.1:0: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("reserve a port: %w", err)
	}
	return f, sa.(*syscall.SockaddrInet4).Port, nil
}

// createDatabase makes a database with a random name on the server of
// adminURL and returns a DSN for it.
func createDatabase(t testing.TB, adminURL string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("pgtest: connect %s: %v\n%s", redact(adminURL), err, howToFix)
	}
	defer conn.Close(context.Background())
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "silo_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v\n%s", err, howToFix)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatalf("pgtest: %s must be a URL (postgres://...): %v", EnvURL, err)
	}
	u.Path = "/" + name
	return u.String()
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparseable URL>"
	}
	return u.Redacted()
}

// ServerPID is the postmaster's process id (its backends are its
// children), or 0 when the server is not running.
func (c *Cluster) ServerPID() int {
	b, err := os.ReadFile(filepath.Join(c.data(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}
