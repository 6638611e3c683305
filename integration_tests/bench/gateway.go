package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	_ "modernc.org/sqlite"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

func init() {
	Register("gateway", Scenario{
		Help: "sentry_region_route (directory cache hits) vs plain reverse_proxy to the same upstream; 10 vs 100,000 organizations",
		Run:  runGateway,
	})
}

// The large directory holds 100,000 organizations; requests spread over
// 50,000 of them, which fits the directory cache (65,536 entries per
// lookup kind), so every routed request is a cache hit.
const (
	smallDirectory = 10
	largeDirectory = 100_000
	largeWorkset   = 50_000
)

func runGateway(ctx context.Context, env *Env) error {
	upstream, err := fastUpstream()
	if err != nil {
		return err
	}
	defer upstream.Close()
	up := upstream.Addr().String()

	ports, err := env.Ports(4)
	if err != nil {
		return err
	}
	admin, plain, gw := ports[0], ports[1].URL(), ports[2].URL()
	// The same reverse_proxy with the transport the gateway builds for
	// each region (timeouts, XFF append): tells what the gateway's own
	// logic costs apart from its proxy settings.
	tuned := ports[3].URL()
	dir, err := env.TempDir()
	if err != nil {
		return err
	}
	dbPath := filepath.Join(dir, "silo.db")
	// Both sites proxy with the same transport settings, so the
	// difference is the gateway's own work: route, directory, headers,
	// limits, metrics.
	caddyfile := fmt.Sprintf(`{
%s	sentry_silo {
		storage sqlite %s
		region us http://%s
		default_region us
		directory_cache 10m 10m
		drainer {
			off
		}
	}
}
%s {
	reverse_proxy %s {
		flush_interval -1
		transport http {
			keepalive_idle_conns_per_host 512
		}
	}
}
%s {
	sentry_region_route
	reverse_proxy %s
}
%s {
	reverse_proxy %s {
		flush_interval -1
		trusted_proxies 0.0.0.0/0 ::/0
		transport http {
			dial_timeout 5s
			response_header_timeout 60s
			read_timeout 90s
			write_timeout 60s
			keepalive 30s
			keepalive_idle_conns_per_host 512
		}
	}
}
`, harness.GlobalOptions(admin), dbPath, up, plain, up, gw, up, tuned, up)
	inst, err := env.Start(admin, caddyfile)
	if err != nil {
		return err
	}
	defer inst.Stop()

	db, err := openDirectory(ctx, dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := addOrganizations(db, 0, smallDirectory); err != nil {
		return err
	}

	c := env.Concurrency
	client := Client(c)
	defer client.CloseIdleConnections()
	urls := func(base string, n int) URLs {
		return func(i uint64) string {
			org := (i * 2654435761) % uint64(n)
			return fmt.Sprintf("%s/api/0/organizations/org-%d/issues/?query=is%%3Aunresolved", base, org)
		}
	}
	for _, u := range []string{urls(plain, 1)(0), urls(gw, smallDirectory)(0)} {
		if err := send(ctx, client, u); err != nil {
			return fmt.Errorf("%s: %v\n%s", u, err, inst.Logs())
		}
	}
	if env.Profile != "" {
		err := profile(inst, env.Profile, 5*time.Second, func() {
			ClosedLoop(ctx, client, c, 5*time.Second, urls(gw, smallDirectory))
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Out, "CPU profile of sentry_region_route under load: %s\n", env.Profile)
		return nil
	}
	pid := inst.Pid()
	m := &matchup{env: env, client: client, pid: pid}

	fmt.Fprintf(env.Out, "machine: %s, load average %s; concurrency %d; %d rounds of %s per target, alternating, after %s warm-up; upstream answers 200 with %d bytes\n",
		env.Machine(), loadAverage(), c, env.Rounds, env.Duration/time.Duration(env.Rounds), env.Warmup, len(upstreamBody))

	small := []*target{
		{name: "reverse_proxy (plain)", urls: urls(plain, smallDirectory)},
		{name: fmt.Sprintf("sentry_region_route, %d orgs", smallDirectory), urls: urls(gw, smallDirectory)},
		{name: "reverse_proxy (gateway's transport)", urls: urls(tuned, smallDirectory)},
	}
	rate := m.run(ctx, small, env.Rate)
	m.paired(ctx, small[0], small[1], rate)

	if err := addOrganizations(db, smallDirectory, largeDirectory); err != nil {
		return err
	}
	// Warm the cache: one request per organization of the working set.
	for i := range uint64(largeWorkset) {
		if err := send(ctx, client, fmt.Sprintf("%s/api/0/organizations/org-%d/issues/", gw, i)); err != nil {
			return fmt.Errorf("warming the directory cache: %v", err)
		}
	}
	large := []*target{
		{name: "reverse_proxy (plain)", urls: urls(plain, smallDirectory)},
		{name: fmt.Sprintf("sentry_region_route, %d orgs (%d hit)", largeDirectory, largeWorkset), urls: urls(gw, largeWorkset)},
	}
	m.run(ctx, large, rate)
	m.paired(ctx, large[0], large[1], rate)

	tw := tabwriter.NewWriter(env.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "target\tclosed rps\tp50 ms\tp99 ms\tp99.9 ms\tcaddy CPU µs/req\t|\topen @%.0f/s: done/s\tp50 ms\tp99 ms\tp99.9 ms\t|\tserial p50 ms\tp99 ms\tp99.9 ms\terrors\t\n", rate)
	for _, t := range append(small, large...) {
		cl, op, se := t.closedResult(), t.openResult(), t.serialResult()
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%.1f\t|\t%.0f\t%s\t%s\t%s\t|\t%s\t%s\t%s\t%d\t\n", t.name,
			cl.RPS(), ms(cl.P(.5)), ms(cl.P(.99)), ms(cl.P(.999)), t.cpuPerReq(t.cpuClosed, cl),
			op.RPS(), ms(op.P(.5)), ms(op.P(.99)), ms(op.P(.999)),
			ms(se.P(.5)), ms(se.P(.99)), ms(se.P(.999)), cl.Errors+op.Errors+se.Errors)
	}
	tw.Flush()
	for _, pair := range [][]*target{small, large} {
		b, g := pair[0], pair[1]
		fmt.Fprintf(env.Out, "%s: Caddy CPU per request %.2fx plain's (throughput bound %.2fx)\n", g.name,
			g.cpuPerReq(g.cpuClosed, g.closedResult())/b.cpuPerReq(b.cpuClosed, b.closedResult()),
			b.cpuPerReq(b.cpuClosed, b.closedResult())/g.cpuPerReq(g.cpuClosed, g.closedResult()))
		fmt.Fprintf(env.Out, "%s: throughput %.2fx plain (target >= 0.90x; per-round ratios %s); p99 added: open-loop %+.3f ms, serial %+.3f ms (target <= 0.5 ms); serial p50 added %+.3f ms; CPU per request %+.1f µs\n",
			g.name, g.closedResult().RPS()/b.closedResult().RPS(), roundRatios(g, b),
			float64(g.openResult().P(.99)-b.openResult().P(.99))/float64(time.Millisecond),
			float64(g.serialResult().P(.99)-b.serialResult().P(.99))/float64(time.Millisecond),
			float64(g.serialResult().P(.5)-b.serialResult().P(.5))/float64(time.Millisecond),
			g.cpuPerReq(g.cpuClosed, g.closedResult())-b.cpuPerReq(b.cpuClosed, b.closedResult()))
	}
	fmt.Fprintf(env.Out, "paired: base and gateway at the same time, %d workers each (closed) or %.0f/s each (open), %d rounds:\n", max(c/2, 1), rate/2, env.Rounds)
	tw = tabwriter.NewWriter(env.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "target\tclosed rps\tp50 ms\tp99 ms\tp99.9 ms\t|\topen p50 ms\tp99 ms\tp99.9 ms\t\n")
	for _, t := range []*target{small[0], small[1], large[0], large[1]} {
		cl, op := combine(t.pairedClosed), combine(t.pairedOpen)
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t|\t%s\t%s\t%s\t\n", t.name,
			cl.RPS(), ms(cl.P(.5)), ms(cl.P(.99)), ms(cl.P(.999)), ms(op.P(.5)), ms(op.P(.99)), ms(op.P(.999)))
	}
	tw.Flush()
	for _, pair := range [][]*target{small, large} {
		b, g := pair[0], pair[1]
		bc, gc := combine(b.pairedClosed), combine(g.pairedClosed)
		bo, gob := combine(b.pairedOpen), combine(g.pairedOpen)
		var ratios []string
		for i := range min(len(b.pairedClosed), len(g.pairedClosed)) {
			ratios = append(ratios, fmt.Sprintf("%.2f", g.pairedClosed[i].RPS()/b.pairedClosed[i].RPS()))
		}
		fmt.Fprintf(env.Out, "paired %s: throughput %.2fx plain (per round %s); open-loop p50 added %+.3f ms, p99 added %+.3f ms\n",
			g.name, gc.RPS()/bc.RPS(), strings.Join(ratios, " "),
			float64(gob.P(.5)-bo.P(.5))/float64(time.Millisecond), float64(gob.P(.99)-bo.P(.99))/float64(time.Millisecond))
	}
	s, l := small[1], large[1]
	fmt.Fprintf(env.Out, "flatness %d vs %d orgs: throughput %.2fx, open-loop p99 %+.3f ms, CPU per request %+.1f µs\n", largeDirectory, smallDirectory,
		l.closedResult().RPS()/s.closedResult().RPS(),
		float64(l.openResult().P(.99)-s.openResult().P(.99))/float64(time.Millisecond),
		l.cpuPerReq(l.cpuClosed, l.closedResult())-s.cpuPerReq(s.cpuClosed, s.closedResult()))
	return nil
}

var upstreamBody = []byte(`{"id":"1","title":"TypeError: x is undefined","status":"unresolved"}` + "\n")

// fastUpstream is a region that answers at once.
func fastUpstream() (net.Listener, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{fmt.Sprint(len(upstreamBody))}
		_, _ = w.Write(upstreamBody)
	})}
	go func() { _ = srv.Serve(l) }()
	return l, nil
}

// openDirectory waits for the instance's migrations to create the
// directory tables.
func openDirectory(ctx context.Context, path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, err
	}
	var n int
	err = harness.Poll(30*time.Second, func() bool {
		err = db.QueryRowContext(ctx, "SELECT count(*) FROM sentry_organizationmapping").Scan(&n)
		return err == nil || ctx.Err() != nil
	})
	if err != nil || ctx.Err() != nil {
		db.Close()
		return nil, fmt.Errorf("directory tables never appeared: %v", err)
	}
	return db, nil
}

// addOrganizations maps org-<from>..org-<to-1> (ids from+1...) to us.
func addOrganizations(db *sql.DB, from, to int) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	const batch = 500
	for i := from; i < to; i += batch {
		end := min(i+batch, to)
		var b strings.Builder
		args := make([]any, 0, 2*(end-i))
		b.WriteString("INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES ")
		for j := i; j < end; j++ {
			if j > i {
				b.WriteByte(',')
			}
			b.WriteString("(?, ?, 'us', 0)")
			args = append(args, j+1, fmt.Sprintf("org-%d", j))
		}
		if _, err := tx.Exec(b.String(), args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}
