package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

func init() {
	Register("instances", Scenario{
		Help: "1, 2 and 4 Caddy instances on one PostgreSQL: capture and drain throughput at -rate (1,000/s), PostgreSQL and Caddy CPU µs per stored and per delivered row, lease conflicts (pg_stat_statements) and duplicate deliveries (must be 0)",
		Run:  runInstances,
	})
}

var instanceCounts = flag.String("instances", "1,2,4", "instances scenario: the instance counts to measure")

// countingRegion records deliveries by delivery id, to count duplicates.
type countingRegion struct {
	l        net.Listener
	mu       sync.Mutex
	seen     map[string]int
	received atomic.Int64
	down     atomic.Bool // answer 503 to everything
}

func newCountingRegion() (*countingRegion, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &countingRegion{l: l, seen: map[string]int{}}
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			_, _ = io.Copy(io.Discard, req.Body)
			if r.down.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			if id := req.Header.Get("X-Github-Delivery"); id != "" {
				r.mu.Lock()
				r.seen[id]++
				r.mu.Unlock()
				r.received.Add(1)
			}
			w.WriteHeader(http.StatusOK)
		}))
	}()
	return r, nil
}

// duplicates counts deliveries beyond the first of each id.
func (r *countingRegion) duplicates() (distinct, dups int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.seen {
		dups += n - 1
	}
	return len(r.seen), dups
}

func runInstances(ctx context.Context, env *Env) error {
	cluster, err := pgtest.StartCluster(pgtest.Options{Durable: true, Settings: map[string]string{
		"shared_preload_libraries": "'pg_stat_statements'",
	}})
	if err != nil {
		return fmt.Errorf("PostgreSQL for the instances bench: %v", err)
	}
	defer cluster.Destroy()
	admin, err := sql.Open("pgx", cluster.AdminURL())
	if err != nil {
		return err
	}
	defer admin.Close()
	rate := env.Rate
	if rate == 0 {
		rate = drainRate
	}
	fmt.Fprintf(env.Out, "machine: %s; PostgreSQL (fsync on); %d mailboxes; per row: %.0f/s captured for %s with the region down (after %s of warm-up), then the backlog drained by all instances; captures spread over the instances\n",
		env.Machine(), drainMailboxes, rate, env.Duration, env.Warmup)
	tw := tabwriter.NewWriter(env.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "instances\tcaptured/s\tPG µs/stored row\tCaddy µs/stored row\tdelivered/s (backlog)\tPG µs/delivered row\tCaddy µs/delivered row\tclaims\tlease conflicts\tduplicates\tcapture errors\t")
	for _, field := range strings.Split(*instanceCounts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 1 {
			return fmt.Errorf("-instances: %q is not a count", field)
		}
		if err := instancesRow(ctx, env, cluster, admin, n, rate, tw); err != nil {
			tw.Flush()
			return err
		}
	}
	return tw.Flush()
}

// instancesRow measures n instances on a database of their own.
func instancesRow(ctx context.Context, env *Env, cluster *pgtest.Cluster, admin *sql.DB, n int, rate float64, tw io.Writer) error {
	name := fmt.Sprintf("instances_%d", n)
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		return err
	}
	dsn := cluster.DatabaseURL(name)
	region, err := newCountingRegion()
	if err != nil {
		return err
	}
	defer region.l.Close()
	var insts []*harness.Caddy
	var urls []string
	for i := 0; i < n; i++ {
		ports, err := env.Ports(2)
		if err != nil {
			return err
		}
		inst, err := env.Start(ports[0], fmt.Sprintf(`{
%s	sentry_silo {
		storage postgres %s
		region us %s
		directory_cache 10m 10m
	}
}
http://%s {
	route {
		sentry_webhook_capture
		respond "control" 200
	}
}
`, harness.GlobalOptions(ports[0]), dsn, "http://"+region.l.Addr().String(), ports[1].Addr))
		if err != nil {
			return err
		}
		defer inst.Stop()
		insts = append(insts, inst)
		urls = append(urls, ports[1].URL()+"/extensions/github/webhook/")
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := seedGitHub(ctx, db, drainMailboxes); err != nil {
		return fmt.Errorf("seeding the directory: %v", err)
	}
	if _, err := db.ExecContext(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		return fmt.Errorf("pg_stat_statements: %v", err)
	}
	client := Client(env.Concurrency)
	defer client.CloseIdleConnections()
	var seq atomic.Int64
	capture := func(ctx context.Context) error {
		i := seq.Add(1)
		box := 1 + i%drainMailboxes
		body := fmt.Sprintf(`{"installation":{"id":%d},"repository":{"id":%d},"ref":"refs/heads/main","seq":%d}`, 5000+box, box, i)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, urls[i%int64(n)], strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("inst-%d-%d", n, i))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	openLoopPost(ctx, env.Concurrency, rate, env.Warmup, capture)
	if err := waitDrained(ctx, db, time.Minute); err != nil {
		return err
	}
	caddyCPU := func() time.Duration {
		var d time.Duration
		for _, in := range insts {
			d += procCPU(in.Pid())
		}
		return d
	}
	// Store: the region is down (its breaker keeps the drainers idle but
	// for a probe every 200ms), so the CPU is the captures'.
	region.down.Store(true)
	pg0, caddy0 := treeCPU(cluster.ServerPID()), caddyCPU()
	res := openLoopPost(ctx, env.Concurrency, rate, env.Duration, capture)
	pgStore, caddyStore := treeCPU(cluster.ServerPID())-pg0, caddyCPU()-caddy0
	stored := res.sent - res.errors
	// Deliver: the region comes back and the instances drain the backlog
	// together; the CPU is the drain's.
	if _, err := db.ExecContext(ctx, `SELECT pg_stat_statements_reset()`); err != nil {
		return fmt.Errorf("pg_stat_statements: %v", err)
	}
	got0 := region.received.Load()
	pg0, caddy0 = treeCPU(cluster.ServerPID()), caddyCPU()
	t0 := time.Now()
	region.down.Store(false)
	drainErr := waitDrained(ctx, db, 5*time.Minute)
	elapsed := time.Since(t0)
	pgDrain, caddyDrain := treeCPU(cluster.ServerPID())-pg0, caddyCPU()-caddy0
	delivered := region.received.Load() - got0
	var claims, claimed int64
	if err := db.QueryRowContext(ctx, `SELECT coalesce(sum(calls), 0), coalesce(sum(rows), 0) FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND query LIKE '%INSERT INTO silo_mailbox_lease AS l%'`).Scan(&claims, &claimed); err != nil {
		return fmt.Errorf("pg_stat_statements: %v", err)
	}
	_, dups := region.duplicates()
	per := func(d time.Duration, rows int64) string {
		if rows == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", float64(d.Microseconds())/float64(rows))
	}
	fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%.0f\t%s\t%s\t%d\t%d\t%d\t%d\t\n", n, float64(stored)/res.elapsed.Seconds(),
		per(pgStore, int64(stored)), per(caddyStore, int64(stored)),
		float64(delivered)/elapsed.Seconds(), per(pgDrain, delivered), per(caddyDrain, delivered),
		claims, claims-claimed, dups, res.errors)
	return drainErr
}
