package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// target is one side of a comparison, measured over several rounds.
type target struct {
	name               string
	urls               URLs
	closed, open       []Result
	serial             []Result
	cpuClosed, cpuOpen time.Duration
	// pid is the Caddy process serving the target, when it is not the
	// matchup's (-compare-binary).
	pid int
	// usedClosed is the CPU of every process of the run during the
	// closed-loop rounds (matchup.upstream set).
	usedClosed cpuSample
}

func (t *target) closedResult() Result { return combine(t.closed) }
func (t *target) openResult() Result   { return combine(t.open) }
func (t *target) serialResult() Result { return combine(t.serial) }

func (t *target) cpuPerReq(cpu time.Duration, r Result) float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(r.Requests)
}

// matchup measures targets against each other on a shared, noisy
// machine: short rounds that alternate the order, so drift in the
// neighbours' load hits every target alike, and the CPU time the Caddy
// process spent per request, which neighbours disturb much less than
// throughput.
type matchup struct {
	env    *Env
	client *http.Client
	pid    int
	// upstream, when set, is the pid of the upstream process, whose CPU
	// is then sampled too (target.usedClosed).
	upstream int
}

// run does the closed-loop rounds, then open-loop rounds at rate (0: a
// fraction of the first target's closed-loop rate), and returns the rate.
func (m *matchup) run(ctx context.Context, targets []*target, rate float64) float64 {
	env := m.env
	per := env.Duration / time.Duration(env.Rounds)
	warm := env.Warmup / time.Duration(env.Rounds)
	order := func(r int) []*target {
		o := slices.Clone(targets)
		if r%2 == 1 {
			slices.Reverse(o)
		}
		return o
	}
	for r := range env.Rounds {
		for _, t := range order(r) {
			ClosedLoop(ctx, m.client, env.Concurrency, warm, t.urls)
			meter := m.meter(t)
			before := meter.sample()
			t.closed = append(t.closed, ClosedLoop(ctx, m.client, env.Concurrency, per, t.urls))
			used := meter.sample().sub(before)
			t.cpuClosed += used.caddy
			t.usedClosed = t.usedClosed.add(used)
		}
	}
	// One request at a time: the latency a request pays, with no
	// queueing in the client or the server.
	for r := range env.Rounds {
		for _, t := range order(r) {
			ClosedLoop(ctx, m.client, 1, warm/4, t.urls)
			t.serial = append(t.serial, ClosedLoop(ctx, m.client, 1, per/2, t.urls))
		}
	}
	if rate == 0 {
		rate = float64(int(targets[0].closedResult().RPS()*env.RateFraction/100) * 100)
	}
	for r := range env.Rounds {
		for _, t := range order(r) {
			ClosedLoop(ctx, m.client, env.Concurrency, warm/2, t.urls)
			cpu := procCPU(m.meter(t).caddy)
			t.open = append(t.open, OpenLoop(ctx, m.client, env.Concurrency, rate, per, t.urls))
			t.cpuOpen += procCPU(m.meter(t).caddy) - cpu
		}
	}
	return rate
}

// meter samples the Caddy process serving t and the upstream process.
func (m *matchup) meter(t *target) cpuMeter {
	pid := m.pid
	if t.pid != 0 {
		pid = t.pid
	}
	return cpuMeter{caddy: pid, postgres: m.upstream}
}

func combine(rs []Result) Result {
	var out Result
	for _, r := range rs {
		out.Requests += r.Requests
		out.Errors += r.Errors
		out.Elapsed += r.Elapsed
		out.Rate = r.Rate
		out.Latencies = append(out.Latencies, r.Latencies...)
	}
	slices.Sort(out.Latencies)
	return out
}

func roundRatios(a, b *target) string {
	var parts []string
	for i := range min(len(a.closed), len(b.closed)) {
		parts = append(parts, fmt.Sprintf("%.2f", a.closed[i].RPS()/b.closed[i].RPS()))
	}
	return strings.Join(parts, " ")
}

// roundP99s is t's open-loop p99 of each round, in ms: a stall of the
// machine is one round's, a cost of the target is every round's.
func roundP99s(t *target) string {
	parts := make([]string, 0, len(t.open))
	for _, r := range t.open {
		parts = append(parts, ms(r.P(.99)))
	}
	return strings.Join(parts, " ")
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
