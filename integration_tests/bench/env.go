package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Env is what every scenario shares: the settings from the flags, the
// binary (built once) and the processes to stop at the end.
type Env struct {
	Out          io.Writer
	Duration     time.Duration
	Warmup       time.Duration
	Concurrency  int
	RateFraction float64
	Rate         float64
	Rounds       int
	Profile      string
	// CompareBinary is a second caddy binary the capture scenario measures
	// against the subject, in alternating rounds.
	CompareBinary string
	// Wrk adds a capture row loaded by wrk, if it is installed.
	Wrk bool
	// Storm adds the capture rows with half the delivery ids repeated.
	Storm bool

	buildOnce sync.Once
	bin       string
	buildErr  error
	tmp       string
	mu        sync.Mutex
	instances []*Instance
}

// Binary builds ./cmd/caddy once and returns its path.
func (e *Env) Binary() (string, error) {
	e.buildOnce.Do(func() {
		if e.bin != "" {
			return
		}
		root, err := moduleRoot()
		if err != nil {
			e.buildErr = err
			return
		}
		dir, err := e.TempDir()
		if err != nil {
			e.buildErr = err
			return
		}
		e.bin = filepath.Join(dir, "caddy")
		cmd := exec.Command("go", "build", "-o", e.bin, "./cmd/caddy")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			e.buildErr = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
	})
	return e.bin, e.buildErr
}

// TempDir returns a fresh directory removed by Close.
func (e *Env) TempDir() (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tmp == "" {
		d, err := os.MkdirTemp("", "silo-bench-")
		if err != nil {
			return "", err
		}
		e.tmp = d
	}
	return os.MkdirTemp(e.tmp, "x")
}

// Close stops every instance and removes the temporary files.
func (e *Env) Close() {
	e.mu.Lock()
	inst := e.instances
	e.instances = nil
	tmp := e.tmp
	e.tmp = ""
	e.mu.Unlock()
	for _, i := range inst {
		i.Stop()
		// A -race binary (-binary) reports here.
		if logs := i.Logs(); strings.Contains(logs, "WARNING: DATA RACE") || strings.Contains(logs, "panic:") {
			fmt.Fprintf(os.Stderr, "bench: the caddy process reported a data race or panic:\n%s\n", logs)
		}
	}
	if tmp != "" {
		os.RemoveAll(tmp)
	}
}

// Machine describes where the numbers were taken.
func (e *Env) Machine() string {
	return fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
}

// FreePort returns a port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// GlobalOptions are the global options lines every instance needs.
func GlobalOptions(admin string) string {
	return fmt.Sprintf("\tadmin %s\n\tauto_https off\n\tgrace_period 1ns\n\tpersist_config off\n\tskip_install_trust\n", admin)
}

// Instance is one running binary.
type Instance struct {
	Admin string
	Dir   string
	cmd   *exec.Cmd
	done  chan struct{}
	logs  *bytes.Buffer
	logMu sync.Mutex
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Start runs the binary on caddyfile and waits for its admin API.
func (e *Env) Start(admin, caddyfile string) (*Instance, error) {
	bin, err := e.Binary()
	if err != nil {
		return nil, err
	}
	return e.StartBinary(bin, admin, caddyfile)
}

// StartBinary is Start with another Caddy binary (-compare-binary).
func (e *Env) StartBinary(bin, admin, caddyfile string) (*Instance, error) {
	dir, err := e.TempDir()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(conf, []byte(caddyfile), 0o600); err != nil {
		return nil, err
	}
	inst := &Instance{Admin: admin, Dir: dir, done: make(chan struct{}), logs: &bytes.Buffer{}}
	cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	cmd.Stdout = lockedWriter{&inst.logMu, inst.logs}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	inst.cmd = cmd
	go func() { _ = cmd.Wait(); close(inst.done) }()
	e.mu.Lock()
	e.instances = append(e.instances, inst)
	e.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-inst.done:
			return nil, fmt.Errorf("caddy exited during start:\n%s", inst.Logs())
		default:
		}
		resp, err := http.Get("http://" + admin + "/config/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return inst, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	inst.Stop()
	return nil, fmt.Errorf("caddy did not start within 60s:\n%s", inst.Logs())
}

// Profile fetches a CPU profile of d from the admin API's pprof endpoint
// while load runs, and writes it to path.
func (i *Instance) Profile(path string, d time.Duration, load func()) error {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", i.Admin, int(d.Seconds())))
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- result{b, err}
	}()
	load()
	r := <-ch
	if r.err != nil {
		return r.err
	}
	return os.WriteFile(path, r.b, 0o644)
}

// Pid is the process id.
func (i *Instance) Pid() int { return i.cmd.Process.Pid }

// Logs returns what the process wrote.
func (i *Instance) Logs() string {
	i.logMu.Lock()
	defer i.logMu.Unlock()
	return i.logs.String()
}

// Stop ends the process (SIGINT, then SIGKILL after 10s).
func (i *Instance) Stop() {
	if i.cmd == nil || i.cmd.Process == nil {
		return
	}
	_ = i.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-i.done:
	case <-time.After(10 * time.Second):
		_ = i.cmd.Process.Kill()
		<-i.done
	}
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/sentrysilo/caddy-silo") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run from inside the caddy-silo module")
		}
		dir = parent
	}
}
