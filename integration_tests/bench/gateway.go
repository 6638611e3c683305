package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	_ "modernc.org/sqlite"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

func init() {
	Register("gateway", Scenario{
		Help: "sentry_region_route (directory cache hits) vs plain reverse_proxy and a static respond, same upstream; 10 vs 100,000 organizations; -compare-binary, -wrk",
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

// gatewaySites is the Caddyfile of an instance: the sentry_silo app on
// its own SQLite directory, the gateway site, and (when set) the sites
// it is measured against: plain reverse_proxy as Caddy ships it (only
// the idle pool sized for the bench's connections) and a static respond,
// the floor of any Caddy handler.
func gatewaySites(admin *harness.Port, dbPath, up, gw, plain, static string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{
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
	sentry_region_route
	reverse_proxy %s
}
`, harness.GlobalOptions(admin), dbPath, up, gw, up)
	if plain != "" {
		fmt.Fprintf(&b, `%s {
	reverse_proxy %s {
		transport http {
			keepalive_idle_conns_per_host 512
		}
	}
}
`, plain, up)
	}
	if static != "" {
		fmt.Fprintf(&b, "%s {\n\trespond `%s` 200\n}\n", static, upstreamBody[:len(upstreamBody)-1])
	}
	return b.String()
}

// gatewayInstance is one Caddy serving the gateway, with its directory.
type gatewayInstance struct {
	c  *harness.Caddy
	db *sql.DB
	gw string
}

func startGatewayInstance(ctx context.Context, env *Env, bin, up string, withBaselines bool) (*gatewayInstance, string, string, error) {
	ports, err := env.Ports(4)
	if err != nil {
		return nil, "", "", err
	}
	dir, err := env.TempDir()
	if err != nil {
		return nil, "", "", err
	}
	dbPath := filepath.Join(dir, "silo.db")
	plain, static := "", ""
	if withBaselines {
		plain, static = ports[2].URL(), ports[3].URL()
	}
	inst, err := env.StartBinary(bin, ports[0], gatewaySites(ports[0], dbPath, up, ports[1].URL(), plain, static))
	if err != nil {
		return nil, "", "", err
	}
	db, err := openDirectory(ctx, dbPath)
	if err != nil {
		return nil, "", "", err
	}
	if err := addOrganizations(db, 0, smallDirectory); err != nil {
		db.Close()
		return nil, "", "", err
	}
	return &gatewayInstance{c: inst, db: db, gw: ports[1].URL()}, plain, static, nil
}

func runGateway(ctx context.Context, env *Env) error {
	upstream, err := startUpstream()
	if err != nil {
		return err
	}
	defer upstream.Close()
	bin, err := env.Binary()
	if err != nil {
		return err
	}
	subject, plain, static, err := startGatewayInstance(ctx, env, bin, upstream.addr, true)
	if err != nil {
		return err
	}
	defer subject.db.Close()
	instances := []*gatewayInstance{subject}
	// -compare-binary: the same gateway on another binary (the commit
	// before a change), in the same rounds.
	var cmp *gatewayInstance
	if env.CompareBinary != "" {
		if cmp, _, _, err = startGatewayInstance(ctx, env, env.CompareBinary, upstream.addr, false); err != nil {
			return err
		}
		defer cmp.db.Close()
		instances = append(instances, cmp)
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
	for _, u := range []string{urls(plain, 1)(0), urls(static, 1)(0), urls(subject.gw, smallDirectory)(0)} {
		if err := send(ctx, client, u); err != nil {
			return fmt.Errorf("%s: %v\n%s", u, err, subject.c.Logs())
		}
	}
	if env.Profile != "" {
		// The gateway, then plain reverse_proxy under the same load, for
		// go tool pprof -diff_base <plain> <gateway>.
		// The request counts turn the profiles' seconds into µs per
		// request (the two windows serve different numbers).
		for _, p := range []struct{ path, base string }{{env.Profile, subject.gw}, {plainProfile(env.Profile), plain}} {
			var r Result
			err := profile(subject.c, p.path, 10*time.Second, func() {
				r = ClosedLoop(ctx, client, c, 10*time.Second, urls(p.base, smallDirectory))
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(env.Out, "%s: %d requests in the profile's 10s\n", p.path, r.Requests)
		}
		fmt.Fprintf(env.Out, "CPU profiles under the same load: sentry_region_route %s, plain reverse_proxy %s\n"+
			"go tool pprof -top -diff_base %s %s\n", env.Profile, plainProfile(env.Profile), plainProfile(env.Profile), env.Profile)
		return nil
	}
	m := &matchup{env: env, client: client, pid: subject.c.Pid(), upstream: upstream.pid()}

	fmt.Fprintf(env.Out, "machine: %s, load average %s; concurrency %d; %d rounds of %s per target, alternating, after %s warm-up; upstream (own process) answers 200 with %d bytes\n",
		env.Machine(), loadAverage(), c, env.Rounds, env.Duration/time.Duration(env.Rounds), env.Warmup, len(upstreamBody))

	gwName := func(inst *gatewayInstance, orgs string) string {
		name := "sentry_region_route, " + orgs
		if inst == cmp {
			name += ", " + filepath.Base(env.CompareBinary)
		}
		return name
	}
	small := []*target{
		{name: "reverse_proxy (plain)", urls: urls(plain, smallDirectory)},
		{name: "respond (static)", urls: urls(static, smallDirectory)},
	}
	for _, inst := range instances {
		small = append(small, &target{name: gwName(inst, fmt.Sprintf("%d orgs", smallDirectory)), urls: urls(inst.gw, smallDirectory), pid: inst.c.Pid()})
	}
	rate := m.run(ctx, small, env.Rate)
	var wrks [][]wrkResult
	if env.Wrk {
		if wrks, err = gatewayWrk(ctx, env, m, small); err != nil {
			return err
		}
	}

	for _, inst := range instances {
		if err := addOrganizations(inst.db, smallDirectory, largeDirectory); err != nil {
			return err
		}
		// Warm the cache: one request per organization of the working set.
		for i := range uint64(largeWorkset) {
			if err := send(ctx, client, fmt.Sprintf("%s/api/0/organizations/org-%d/issues/", inst.gw, i)); err != nil {
				return fmt.Errorf("warming the directory cache: %v", err)
			}
		}
	}
	large := []*target{{name: "reverse_proxy (plain)", urls: urls(plain, smallDirectory)}}
	for _, inst := range instances {
		large = append(large, &target{name: gwName(inst, fmt.Sprintf("%d orgs (%d hit)", largeDirectory, largeWorkset)), urls: urls(inst.gw, largeWorkset), pid: inst.c.Pid()})
	}
	m.run(ctx, large, rate)

	fmt.Fprintf(env.Out, "load average after the run: %s\n", loadAverage())
	tw := tabwriter.NewWriter(env.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "target\tclosed rps\tp50 ms\tp99 ms\tCPU µs/req: caddy\tupstream\tclient\t|\topen @%.0f/s: done/s\tp50 ms\tp99 ms\tp99.9 ms\t|\tserial p50 ms\tp99 ms\terrors\t\n", rate)
	for _, t := range append(small, large...) {
		cl, op, se := t.closedResult(), t.openResult(), t.serialResult()
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%.1f\t%.1f\t%.1f\t|\t%.0f\t%s\t%s\t%s\t|\t%s\t%s\t%d\t\n", t.name,
			cl.RPS(), ms(cl.P(.5)), ms(cl.P(.99)), perReq(t.usedClosed.caddy, cl), perReq(t.usedClosed.postgres, cl), perReq(t.usedClosed.client, cl),
			op.RPS(), ms(op.P(.5)), ms(op.P(.99)), ms(op.P(.999)),
			ms(se.P(.5)), ms(se.P(.99)), cl.Errors+op.Errors+se.Errors)
	}
	tw.Flush()
	fmt.Fprintln(env.Out, "open-loop p99 per round (ms):")
	for _, t := range append(small, large...) {
		fmt.Fprintf(env.Out, "  %s: %s\n", t.name, roundP99s(t))
	}
	for _, phase := range [][]*target{small, large} {
		b := phase[0]
		for _, g := range phase[1:] {
			if !strings.HasPrefix(g.name, "sentry_region_route") {
				continue
			}
			fmt.Fprintf(env.Out, "%s: throughput %.2fx plain (median of per-round ratios %.2f; rounds %s; target >= 0.95x); Caddy CPU %+.1f µs/req over plain (target <= 5); p99 added: open-loop %+.3f ms, serial %+.3f ms (target <= 0.5 ms)\n",
				g.name, g.closedResult().RPS()/b.closedResult().RPS(), medianRatio(g, b), roundRatios(g, b),
				perReq(g.usedClosed.caddy, g.closedResult())-perReq(b.usedClosed.caddy, b.closedResult()),
				float64(g.openResult().P(.99)-b.openResult().P(.99))/float64(time.Millisecond),
				float64(g.serialResult().P(.99)-b.serialResult().P(.99))/float64(time.Millisecond))
		}
	}
	if len(wrks) > 0 {
		printGatewayWrk(env, small, wrks)
	}
	s, l := small[2], large[1]
	fmt.Fprintf(env.Out, "flatness %d vs %d orgs: throughput %.2fx, open-loop p99 %+.3f ms, Caddy CPU %+.1f µs/req\n", largeDirectory, smallDirectory,
		l.closedResult().RPS()/s.closedResult().RPS(),
		float64(l.openResult().P(.99)-s.openResult().P(.99))/float64(time.Millisecond),
		perReq(l.usedClosed.caddy, l.closedResult())-perReq(s.usedClosed.caddy, s.closedResult()))
	return nil
}

// plainProfile is where -cpuprofile puts plain reverse_proxy's profile.
func plainProfile(path string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + ".plain" + ext
}

func perReq(d time.Duration, r Result) float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(r.Requests)
}

// medianRatio is the median of a's per-round throughput over b's.
func medianRatio(a, b *target) float64 {
	var rs []float64
	for i := range min(len(a.closed), len(b.closed)) {
		rs = append(rs, a.closed[i].RPS()/b.closed[i].RPS())
	}
	if len(rs) == 0 {
		return 0
	}
	slices.Sort(rs)
	if len(rs)%2 == 1 {
		return rs[len(rs)/2]
	}
	return (rs[len(rs)/2-1] + rs[len(rs)/2]) / 2
}

var upstreamBody = []byte(`{"id":"1","title":"TypeError: x is undefined","status":"unresolved"}` + "\n")

// fastUpstream is a region that answers at once, in this process (the
// credproxy scenario's).
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
