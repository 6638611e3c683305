package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// gatewayWrkScript walks the same organizations as the bench's own
// client (the target's URL gives scheme and host).
const gatewayWrkScript = `
local n = 0
function request()
  n = n + 1
  return wrk.format("GET", string.format("/api/0/organizations/org-%%d/issues/?query=is%%%%3Aunresolved", n %% %d))
end
`

// gatewayWrk loads each target with wrk (2 threads, -concurrency
// connections), in alternating rounds like the bench's own client: a
// cross-check of the load generator. Nothing when wrk is not installed.
func gatewayWrk(ctx context.Context, env *Env, m *matchup, targets []*target) ([][]wrkResult, error) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		fmt.Fprintln(env.Out, "wrk is not installed (apt-get install wrk): no wrk rows")
		return nil, nil
	}
	dir, err := env.TempDir()
	if err != nil {
		return nil, err
	}
	script := filepath.Join(dir, "gateway.lua")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(gatewayWrkScript, smallDirectory)), 0o600); err != nil {
		return nil, err
	}
	// wrk takes whole seconds: half a round's share each, at least 1s.
	per := max(env.Duration/time.Duration(env.Rounds)/2, time.Second)
	out := make([][]wrkResult, len(targets))
	for r := range env.Rounds {
		for k := range targets {
			i := k
			if r%2 == 1 {
				i = len(targets) - 1 - k
			}
			t := targets[i]
			base := strings.SplitN(t.urls(0), "/api/", 2)[0]
			w, _, err := wrkRun(ctx, env, bin, m.meter(t), script, base+"/", per)
			if err != nil {
				return nil, err
			}
			out[i] = append(out[i], w)
		}
	}
	return out, nil
}

func printGatewayWrk(env *Env, targets []*target, wrks [][]wrkResult) {
	fmt.Fprintf(env.Out, "wrk -t2 -c%d, %d alternating rounds:\n", env.Concurrency, env.Rounds)
	tw := tabwriter.NewWriter(env.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "target\trps\tp50 ms\tp99 ms (worst round)\tCPU µs/req: caddy\tupstream\twrk\terrors\tper-round rps\t\n")
	for i, t := range targets {
		var n, errs int
		var rps float64
		var caddy, up, cpu float64
		var p50, p99 float64
		var rounds []string
		for _, w := range wrks[i] {
			n += w.requests
			errs += w.errors
			rps += w.rps / float64(len(wrks[i]))
			caddy += float64(w.caddy.Microseconds())
			up += float64(w.pg.Microseconds())
			cpu += float64(w.cpu.Microseconds())
			p50 += float64(w.p50.Microseconds()) / 1000 / float64(len(wrks[i]))
			p99 = max(p99, float64(w.p99.Microseconds())/1000)
			rounds = append(rounds, fmt.Sprintf("%.0f", w.rps))
		}
		if n == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t%.3f\t%.1f\t%.1f\t%.1f\t%d\t%s\t\n", t.name, rps, p50, p99,
			caddy/float64(n), up/float64(n), cpu/float64(n), errs, strings.Join(rounds, " "))
	}
	tw.Flush()
}
