package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// -wrk runs the capture load through wrk (https://github.com/wg/wrk), the
// generator the peers were measured with, when it is on PATH
// (apt-get install wrk): 2 threads, the same connections, the same GitHub
// pushes with fresh delivery ids. Its CPU is wrk's own, from the kernel's
// accounting of the finished process. It cross-checks rawClient: on the
// bench VM both cost ~22 µs per request and gave the same rate.

// captureWrkScript renders the pushes captureTarget sends.
const captureWrkScript = `
local pad = string.rep("x", 1100)
local threads = 0
local prefix = "%s"
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  n = 0
end
function request()
  n = n + 1
  local inst = 5001 + (n %% 100)
  local body = '{"ref":"refs/heads/main","before":"0000","after":"1111","repository":{"id":' .. n ..
    ',"full_name":"acme/app"},"installation":{"id":' .. inst .. '},"head_commit":{"message":"' .. pad .. '"}}'
  local headers = {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "GitHub-Hookshot/abc123",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Hook-ID"] = "123456",
    ["X-Hub-Signature"] = "sha1=0123456789abcdef0123456789abcdef01234567",
    ["X-Hub-Signature-256"] = "sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ["X-GitHub-Delivery"] = prefix .. tid .. "-" .. n,
  }
  return wrk.format("POST", "/extensions/github/webhook/", headers, body)
end
`

type wrkResult struct {
	rps       float64
	p50, p99  time.Duration
	requests  int
	errors    int           // non-2xx answers and socket errors
	cpu       time.Duration // wrk's user+system time
	caddy, pg time.Duration // CPU of Caddy and PostgreSQL meanwhile
}

var (
	wrkRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkRequests = regexp.MustCompile(`([0-9]+) requests in`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: ([0-9]+)`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)`)
	wrkLatency  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
)

// runWrk loads base for d with wrk; ok is false when wrk is not installed.
func runWrk(ctx context.Context, env *Env, meter cpuMeter, base, prefix string, d time.Duration) (r wrkResult, ok bool, err error) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		return r, false, nil
	}
	dir, err := env.TempDir()
	if err != nil {
		return r, true, err
	}
	script := filepath.Join(dir, "capture.lua")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(captureWrkScript, prefix)), 0o600); err != nil {
		return r, true, err
	}
	return wrkRun(ctx, env, bin, meter, script, base+"/extensions/github/webhook/", d)
}

// wrkRun runs wrk with 2 threads and env.Concurrency connections on url
// for d with the Lua script, and reads its report; meter samples the
// other processes meanwhile.
func wrkRun(ctx context.Context, env *Env, bin string, meter cpuMeter, script, url string, d time.Duration) (r wrkResult, ok bool, err error) {
	secs := max(1, int(d.Seconds()))
	cmd := exec.CommandContext(ctx, bin, "-t2", fmt.Sprintf("-c%d", env.Concurrency), fmt.Sprintf("-d%ds", secs),
		"--latency", "--timeout", "10s", "-s", script, url)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	before := meter.sample()
	if err := cmd.Run(); err != nil {
		return r, true, fmt.Errorf("wrk: %v\n%s", err, out.String())
	}
	used := meter.sample().sub(before)
	r.caddy, r.pg = used.caddy, used.postgres
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	text := out.String()
	if m := wrkRPS.FindStringSubmatch(text); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := wrkRequests.FindStringSubmatch(text); m != nil {
		r.requests, _ = strconv.Atoi(m[1])
	}
	if m := wrkNon2xx.FindStringSubmatch(text); m != nil {
		n, _ := strconv.Atoi(m[1])
		r.errors += n
	}
	if m := wrkSocket.FindStringSubmatch(text); m != nil {
		for _, v := range m[1:] {
			n, _ := strconv.Atoi(v)
			r.errors += n
		}
	}
	for _, m := range wrkLatency.FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		lat := time.Duration(v * float64(unit))
		if m[1] == "50" {
			r.p50 = lat
		} else {
			r.p99 = lat
		}
	}
	if r.requests == 0 {
		return r, true, fmt.Errorf("wrk: no result in its output:\n%s", text)
	}
	return r, true, nil
}
