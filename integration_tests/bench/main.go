// Command bench is caddy-silo's load harness (not a timed test): each
// scenario starts the real binary with fake upstreams on 127.0.0.1 and
// prints its figures next to a baseline measured in the same run.
//
//	go run ./integration_tests/bench -scenario gateway
//	go run ./integration_tests/bench -scenario all -duration 10s
//
// Scenarios register themselves from their own file (see Register), so a
// new one is one new file.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"
)

// Scenario is one load scenario.
type Scenario struct {
	// Help is one line for -list.
	Help string
	// Run measures and prints its table to env.Out.
	Run func(ctx context.Context, env *Env) error
}

var scenarios = map[string]Scenario{}

// Register adds a scenario; call it from an init function.
func Register(name string, s Scenario) {
	if _, dup := scenarios[name]; dup {
		panic("bench: scenario registered twice: " + name)
	}
	scenarios[name] = s
}

func names() []string {
	out := make([]string, 0, len(scenarios))
	for n := range scenarios {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func main() {
	env := &Env{Out: os.Stdout}
	scenario := flag.String("scenario", "all", "scenarios to run, comma-separated, or all ("+strings.Join(names(), "|")+")")
	list := flag.Bool("list", false, "list the scenarios and exit")
	flag.DurationVar(&env.Duration, "duration", 12*time.Second, "measured time per target and loop kind (split into rounds)")
	flag.DurationVar(&env.Warmup, "warmup", 2*time.Second, "unmeasured load before each run")
	flag.IntVar(&env.Concurrency, "concurrency", 32, "connections / workers for both the baseline and the subject")
	flag.IntVar(&env.Rounds, "rounds", 4, "alternating rounds per comparison (the duration is split between them)")
	flag.Float64Var(&env.RateFraction, "rate-fraction", 0.25, "open-loop rate as a fraction of the baseline's closed-loop maximum")
	flag.Float64Var(&env.Rate, "rate", 0, "fixed open-loop rate in requests/s (overrides -rate-fraction)")
	flag.StringVar(&env.bin, "binary", "", "use this caddy binary instead of building ./cmd/caddy")
	flag.StringVar(&env.CompareBinary, "compare-binary", "", "capture: also measure this caddy binary, in rounds alternating with the subject's (A/B of a change on a noisy machine)")
	flag.BoolVar(&env.Storm, "storm", true, "capture: also measure a duplicate storm (every delivery id sent twice) in the same rounds; -storm=false for an A/B of the unique-id path alone, whose PostgreSQL the storm's writes would share")
	flag.BoolVar(&env.Wrk, "wrk", false, "capture: also load it with wrk (apt-get install wrk), in the same rounds, to cross-check the load generator")
	flag.StringVar(&env.Profile, "cpuprofile", "", "write a CPU profile of the Caddy process under the subject's load to this file")
	flag.Parse()
	if env.Rounds < 1 {
		env.Rounds = 1
	}
	if *list {
		for _, n := range names() {
			fmt.Printf("%-12s %s\n", n, scenarios[n].Help)
		}
		return
	}
	// Several in one run (-scenario gateway,capture): one machine state
	// and one build for the README's rows.
	run := strings.Split(*scenario, ",")
	if *scenario == "all" {
		run = names()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	defer env.Close()
	failed := false
	for _, n := range run {
		s, ok := scenarios[n]
		if !ok {
			fmt.Fprintf(os.Stderr, "bench: unknown scenario %q (have %s)\n", n, strings.Join(names(), ", "))
			os.Exit(2)
		}
		fmt.Fprintf(env.Out, "== %s: %s\n", n, s.Help)
		if err := s.Run(ctx, env); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", n, err)
			failed = true
		}
	}
	if failed {
		env.Close()
		os.Exit(1)
	}
}
