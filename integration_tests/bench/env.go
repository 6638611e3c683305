package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// Env is what every scenario shares: the settings from the flags, the
// binary (built once) and what to release at the end: the instances, the
// reserved ports and the temporary files. Instances are the harness's
// (the same start, ports and global options as the integration tests).
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
	instances []*harness.Caddy
	ports     []*harness.Port
}

// Binary builds ./cmd/caddy once and returns its path.
func (e *Env) Binary() (string, error) {
	e.buildOnce.Do(func() {
		if e.bin != "" { // -binary
			return
		}
		dir, err := e.TempDir()
		if err != nil {
			e.buildErr = err
			return
		}
		e.bin, e.buildErr = harness.Build(dir)
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

// Ports reserves n loopback ports until Close (harness.NewPort).
func (e *Env) Ports(n int) ([]*harness.Port, error) {
	out := make([]*harness.Port, 0, n)
	for range n {
		p, err := harness.NewPort()
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		e.ports = append(e.ports, p)
		e.mu.Unlock()
		out = append(out, p)
	}
	return out, nil
}

// Close stops every instance, releases the ports and removes the
// temporary files.
func (e *Env) Close() {
	e.mu.Lock()
	inst, ports := e.instances, e.ports
	e.instances, e.ports = nil, nil
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
	for _, p := range ports {
		p.Close()
	}
	if tmp != "" {
		os.RemoveAll(tmp)
	}
}

// Machine describes where the numbers were taken.
func (e *Env) Machine() string {
	return fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
}

// Start runs the binary on caddyfile (harness.Launch) and returns once
// its config is running.
func (e *Env) Start(admin *harness.Port, caddyfile string) (*harness.Caddy, error) {
	bin, err := e.Binary()
	if err != nil {
		return nil, err
	}
	return e.StartBinary(bin, admin, caddyfile)
}

// StartBinary is Start with another Caddy binary (-compare-binary).
func (e *Env) StartBinary(bin string, admin *harness.Port, caddyfile string) (*harness.Caddy, error) {
	dir, err := e.TempDir()
	if err != nil {
		return nil, err
	}
	c, err := harness.Launch(bin, dir, admin, caddyfile)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.instances = append(e.instances, c)
	e.mu.Unlock()
	return c, nil
}

// profile fetches a CPU profile of d from c's admin API (pprof) while load
// runs, and writes it to path. It also writes the heap profiles of before
// and after the load to path.allocs.before and path.allocs: the bytes and
// objects allocated under the load are
// go tool pprof -sample_index=alloc_space -diff_base path.allocs.before path.allocs.
func profile(c *harness.Caddy, path string, d time.Duration, load func()) error {
	before, err := adminGet(c, "/debug/pprof/allocs")
	if err != nil {
		return err
	}
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := adminGet(c, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())))
		ch <- result{b, err}
	}()
	load()
	r := <-ch
	if r.err != nil {
		return r.err
	}
	after, err := adminGet(c, "/debug/pprof/allocs")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path+".allocs.before", before, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(path+".allocs", after, 0o644); err != nil {
		return err
	}
	return os.WriteFile(path, r.b, 0o644)
}

func adminGet(c *harness.Caddy, path string) ([]byte, error) {
	resp, err := http.Get("http://" + c.AdminAddr + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return io.ReadAll(resp.Body)
}
