// Package harness runs the real caddy-silo binary for black-box tests and
// the load bench: it builds ./cmd/caddy, reserves loopback ports (port.go),
// starts instances with their own data directory on reserved ports,
// reloads them through the admin API, kills and restarts them, and polls
// for conditions (Poll). The core returns errors, for programs; the
// functions that take a testing.TB are thin wrappers that fail the test.
package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds ./cmd/caddy (once per test process) and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "silo-caddy-bin-")
		if err != nil {
			buildErr = err
			return
		}
		removeAfterExit(dir)
		binPath, buildErr = Build(dir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// removeAfterExit removes dir once this process has exited, however it
// exits: a test process has no hook that runs after its last test, and
// each build is 90 MB (127 of them were left in /tmp on the shared
// machine before this).
func removeAfterExit(dir string) {
	cmd := exec.Command("sh", "-c", `while kill -0 "$1" 2>/dev/null; do sleep 1; done; rm -rf -- "$2"`, "sh", strconv.Itoa(os.Getpid()), dir)
	if err := cmd.Start(); err == nil {
		go func() { _ = cmd.Wait() }()
	}
}

// Build builds ./cmd/caddy into dir and returns the binary's path.
func Build(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "caddy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	return bin, nil
}

// ModuleRoot finds the caddy-silo module's directory, walking up from the
// working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/sentrysilo/caddy-silo\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("the caddy-silo go.mod is not above the working directory: run from inside the module")
		}
		dir = parent
	}
}

// GlobalOptions returns the global option lines every instance needs, the
// admin endpoint on the reserved port admin. Put them inside the
// Caddyfile's global block. The grace period is real (2s), not the 1ns of
// Caddy's own tests: with 1ns, a connection the old server accepted during
// a reload is cut, and reload tests would see failures that production
// (eternal grace by default) does not have.
func GlobalOptions(admin *Port) string {
	return fmt.Sprintf("\tadmin %s\n\tauto_https off\n\tgrace_period 2s\n\tpersist_config off\n\tskip_install_trust\n", admin.Addr)
}

// Caddy is one running instance of the binary.
type Caddy struct {
	Admin     *Port  // the admin endpoint's port
	AdminAddr string // Admin.Addr, for clients
	Dir       string // the instance's home: data dir, config file, logs

	bin  string
	env  []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// logs is the path of the file the process writes its stdout and stderr to
	// directly. A file, not a pipe copied by a goroutine: with a pipe,
	// Caddy's ready notification (a datagram) could arrive before the copy
	// of the lines logged during the load (CI saw "directory snapshot
	// loaded" missing from the logs right after a restart that had logged
	// it). Written by the process itself, every line logged before the
	// notification is in the file when the notification arrives.
	logs string
}

// Start is Launch for tests: the binary built by Binary, a directory of
// the test's, and the instance stopped when the test ends.
func Start(t testing.TB, admin *Port, caddyfile string, env ...string) *Caddy {
	t.Helper()
	c, err := Launch(Binary(t), t.TempDir(), admin, caddyfile, env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// Launch writes caddyfile to dir and runs bin on it with env added to the
// environment. The Caddyfile puts the admin endpoint on the reserved port
// admin (GlobalOptions) and its sites on reserved ports too (see port.go).
// Launch returns once the config is running; the caller must Stop the
// instance.
func Launch(bin, dir string, admin *Port, caddyfile string, env ...string) (*Caddy, error) {
	c := &Caddy{Admin: admin, AdminAddr: admin.Addr, Dir: dir, bin: bin, env: env, logs: filepath.Join(dir, "caddy.log")}
	if err := os.WriteFile(c.configPath(), []byte(caddyfile), 0o600); err != nil {
		return nil, err
	}
	if err := c.launch(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Caddy) configPath() string { return filepath.Join(c.Dir, "Caddyfile") }

// launch starts the process and waits for Caddy's own signal that the
// config is loaded: Caddy speaks systemd's notify protocol (a datagram
// "READY=1" to $NOTIFY_SOCKET once the first config load has finished,
// preceded by "STATUS=<error>" when it failed), so nothing polls.
func (c *Caddy) launch() error {
	notify, err := listenNotify()
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin, "run", "--config", c.configPath(), "--adapter", "caddyfile")
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(),
		"HOME="+c.Dir,
		"XDG_DATA_HOME="+filepath.Join(c.Dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(c.Dir, "config"),
		"NOTIFY_SOCKET="+notify.path,
	)
	cmd.Env = append(cmd.Env, c.env...)
	// Appended to across relaunches; the child holds its own descriptor.
	logs, err := os.OpenFile(c.logs, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		notify.close()
		return err
	}
	defer logs.Close()
	cmd.Stdout = logs
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		notify.close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		// The socket lives as long as the process: Caddy notifies on
		// every reload too, and logs an error when nobody listens.
		notify.closeAfterExit()
		close(done)
	}()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()

	// 60s: a cold start on a loaded 2-core machine, with PostgreSQL DSNs,
	// takes a few seconds; a minute means it is stuck.
	stuck := time.NewTimer(60 * time.Second)
	defer stuck.Stop()
	select {
	case failure := <-notify.ready:
		if failure == "" {
			forgetConnections() // any to the previous process are dead
			return nil
		}
		c.Stop()
		return fmt.Errorf("caddy could not load its config: %s\n%s", failure, c.Logs())
	case <-done:
		// A config that fails to load notifies and exits at once: both
		// can be ready here, and done comes after what the process sent
		// was read (closeAfterExit).
		select {
		case failure := <-notify.ready:
			if failure != "" {
				return fmt.Errorf("caddy could not load its config: %s\n%s", failure, c.Logs())
			}
		default:
		}
		return fmt.Errorf("caddy exited during start:\n%s", c.Logs())
	case <-stuck.C:
		c.Stop()
		return fmt.Errorf("caddy did not finish loading its config within 60s:\n%s", c.Logs())
	}
}

// notifySocket receives one process's service-manager notifications.
type notifySocket struct {
	path  string
	conn  *net.UnixConn
	ready chan string // once: "" when the first load succeeded, else its STATUS
	// stopped is closed when read returns.
	stopped chan struct{}
}

func listenNotify() (*notifySocket, error) {
	// Its own short directory: a socket path must fit in 108 bytes, which
	// a test's TempDir (named after the test) may not.
	dir, err := os.MkdirTemp("", "silo-notify-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	n := &notifySocket{path: path, conn: conn, ready: make(chan string, 1), stopped: make(chan struct{})}
	go n.read()
	return n, nil
}

func (n *notifySocket) read() {
	defer close(n.stopped)
	buf := make([]byte, 64<<10)
	status, readied := "", false
	for {
		k, err := n.conn.Read(buf)
		if err != nil {
			return // closed, or the deadline of closeAfterExit
		}
		for _, line := range strings.Split(string(buf[:k]), "\n") {
			switch {
			case strings.HasPrefix(line, "STATUS="):
				status = strings.TrimPrefix(line, "STATUS=")
			case line == "READY=1" && !readied:
				readied = true
				n.ready <- status
			}
		}
	}
}

// closeAfterExit closes the socket once the process has exited, after
// reading what it sent before: datagrams queued in the socket are read at
// once, and the deadline ends the read that waits for more. Closing at once
// could drop a failed load's STATUS, which Caddy sends just before it exits
// (CI saw "caddy exited during start" where the load error was expected).
func (n *notifySocket) closeAfterExit() {
	_ = n.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	<-n.stopped
	n.close()
}

func (n *notifySocket) close() {
	n.conn.Close()
	os.RemoveAll(filepath.Dir(n.path))
}

// Reload loads a new Caddyfile through the admin API, forced so that an
// unchanged config is still provisioned again. It fails the test when
// Caddy refuses the config; use TryReload to look at the error.
func (c *Caddy) Reload(t testing.TB, caddyfile string) {
	t.Helper()
	if err := c.TryReload(caddyfile); err != nil {
		t.Fatal(err)
	}
}

// TryReload is Reload returning Caddy's error instead of failing.
func (c *Caddy) TryReload(caddyfile string) error {
	req, _ := http.NewRequest(http.MethodPost, "http://"+c.AdminAddr+"/load", strings.NewReader(caddyfile))
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err := adminClient.Do(req)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reload: %s: %s", resp.Status, body)
	}
	// Relaunch starts from the file: it holds the last loaded config.
	if err := os.WriteFile(c.configPath(), []byte(caddyfile), 0o600); err != nil {
		return fmt.Errorf("reload: loaded, but not saved for a restart: %w", err)
	}
	forgetConnections()
	return nil
}

// forgetConnections closes the idle keep-alive connections of the test
// process's default HTTP client. A reload closes the old config's idle
// connections on Caddy's side as it returns; a request a test sends at once
// on one of them can reach the socket as it closes and be reset (a CI run
// saw "connection reset by peer" in TestStartReloadKillRestart and EOF in
// TestMetricsKeepCountingAcrossReloads, each on the first GET after a
// reload). Go's transport retries a request only when
// the close came as an EOF before it was sent, so a reset is the test's
// error. Production clients meet the same race (docs/operations.md,
// Reloads); a test's next request goes out on a new connection instead.
func forgetConnections() {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
}

// Kill ends the process with SIGKILL, as a crash would.
func (c *Caddy) Kill() { c.signal(syscall.SIGKILL, 10*time.Second) }

// Stop asks the process to exit (SIGINT), and kills it after 15s.
func (c *Caddy) Stop() {
	if !c.signal(syscall.SIGINT, 15*time.Second) {
		c.signal(syscall.SIGKILL, 10*time.Second)
	}
}

// Running reports whether the process is alive.
func (c *Caddy) Running() bool {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

func (c *Caddy) signal(sig syscall.Signal, wait time.Duration) bool {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(wait):
		return false
	}
}

// Restart is Relaunch for tests.
func (c *Caddy) Restart(t testing.TB) {
	t.Helper()
	if err := c.Relaunch(); err != nil {
		t.Fatal(err)
	}
}

// Relaunch starts the binary again with the last loaded config, the same
// environment, the same data directory and the same ports. The process
// must have exited.
func (c *Caddy) Relaunch() error {
	if c.Running() {
		return fmt.Errorf("relaunch: the instance is still running")
	}
	return c.launch()
}

// Pid returns the process id.
func (c *Caddy) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Logs returns everything the process wrote so far.
func (c *Caddy) Logs() string {
	b, err := os.ReadFile(c.logs)
	if err != nil {
		return fmt.Sprintf("(reading the logs: %v)", err)
	}
	return string(b)
}

// DataDir is Caddy's data directory for this instance (the embedded SQLite
// default lives in DataDir()/caddy/sentry_silo/silo.db).
func (c *Caddy) DataDir() string { return filepath.Join(c.Dir, "data", "caddy") }

// AdminGet fetches a path from the admin API.
func (c *Caddy) AdminGet(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.AdminAddr+path, nil)
	if err != nil {
		return nil, err
	}
	return adminClient.Do(req)
}

// adminClient opens a connection per request: Caddy restarts its admin
// server on every load, which resets kept-alive connections.
var adminClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}

// Get is http.Get that sends a request again, once, when its connection was
// reset or closed before any answer: on Linux a brand-new connection queued
// on a listening socket that a config load (Start's or a reload's) closes
// is reset before any handler sees it (docs/operations.md, Reloads), and
// Go's transport retries such a request only on a reused connection. Two
// fresh-clone CI runs met it once each (2026-12-01: EOF after a reload,
// reset after a start).
func Get(url string) (*http.Response, error) {
	resp, err := http.Get(url)
	if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		resp, err = http.Get(url)
	}
	return resp, err
}
