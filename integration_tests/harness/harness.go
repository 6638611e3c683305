// Package harness runs the real caddy-silo binary for black-box tests: it
// builds ./cmd/caddy once per test process, starts instances with their own
// data directory and admin address, reloads them through the admin API and
// kills them.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
		root, err := ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "silo-caddy-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "caddy")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/caddy")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// ModuleRoot finds the directory holding go.mod, walking up from the
// working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// GlobalOptions returns the global option lines every test instance needs.
// Put them inside the Caddyfile's global block. The grace period is real
// (2s), not the 1ns of Caddy's own tests: with 1ns, a connection the old
// server accepted during a reload is cut, and reload tests would see
// failures that production (eternal grace by default) does not have.
func GlobalOptions(adminAddr string) string {
	return fmt.Sprintf("\tadmin %s\n\tauto_https off\n\tgrace_period 2s\n\tpersist_config off\n\tskip_install_trust\n", adminAddr)
}

// Caddy is one running instance of the binary.
type Caddy struct {
	AdminAddr string
	Dir       string // the instance's home: data dir, config file, logs

	t         testing.TB
	caddyfile string
	env       []string
	mu        sync.Mutex
	cmd       *exec.Cmd
	done      chan struct{}
	logs      *syncBuffer
}

// Start writes caddyfile to a new directory and runs the binary on it with
// env added to the environment. It returns once the admin API answers on
// adminAddr, and stops the instance when the test ends.
func Start(t testing.TB, adminAddr, caddyfile string, env ...string) *Caddy {
	t.Helper()
	dir := t.TempDir()
	c := &Caddy{AdminAddr: adminAddr, Dir: dir, t: t, caddyfile: caddyfile, env: env, logs: &syncBuffer{}}
	if err := os.WriteFile(c.configPath(), []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	c.start(t)
	t.Cleanup(c.Stop)
	return c
}

func (c *Caddy) configPath() string { return filepath.Join(c.Dir, "Caddyfile") }

func (c *Caddy) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(Binary(t), "run", "--config", c.configPath(), "--adapter", "caddyfile")
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(),
		"HOME="+c.Dir,
		"XDG_DATA_HOME="+filepath.Join(c.Dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(c.Dir, "config"),
	)
	cmd.Env = append(cmd.Env, c.env...)
	cmd.Stdout = c.logs
	cmd.Stderr = c.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()

	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			t.Fatalf("caddy exited during start:\n%s", c.Logs())
		default:
		}
		resp, err := adminClient.Get("http://" + c.AdminAddr + "/config/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("caddy did not answer on %s within 60s:\n%s", c.AdminAddr, c.Logs())
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
	c.mu.Lock()
	c.caddyfile = caddyfile
	c.mu.Unlock()
	_ = os.WriteFile(c.configPath(), []byte(caddyfile), 0o600)
	return nil
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

// Restart starts the binary again with the last loaded config, the same
// environment and the same data directory. The process must have exited.
func (c *Caddy) Restart(t testing.TB) {
	t.Helper()
	if c.Running() {
		t.Fatal("Restart: the instance is still running")
	}
	c.start(t)
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
func (c *Caddy) Logs() string { return c.logs.String() }

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

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
