package main

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

func init() {
	Register("drain", Scenario{
		Help: "mailbox drainer on PostgreSQL: capture-to-region latency at a steady rate over 100 mailboxes, backlog drain throughput and RSS; baseline: the same webhooks POSTed straight to the region",
		Run:  runDrain,
	})
}

const (
	drainMailboxes = 100
	// drainRate is the steady capture rate when -rate is not given
	// (design target: p50 <= 50 ms, p99 <= 250 ms at 1,000/s).
	drainRate = 1000
)

// drainBacklog is how many webhooks pile up while the region is down
// (-drain-backlog; 1000000 shows that RSS does not grow with the backlog).
var drainBacklog = flag.Int("drain-backlog", 20_000, "drain scenario: webhooks stored while the region is down")

// sentHeader carries the capture's send time (unix ns) through the store
// to the region, which computes capture-to-delivery latency on the same
// clock.
const sentHeader = "X-Bench-Sent"

// benchRegion is a fast fake region that records capture-to-delivery
// latency; while down it answers 503 to everything.
type benchRegion struct {
	l    net.Listener
	down atomic.Bool

	mu        sync.Mutex
	latencies []time.Duration
	delivered int
	first     time.Time
	last      time.Time
}

func newBenchRegion() (*benchRegion, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &benchRegion{l: l}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		if r.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if v := req.Header.Get(sentHeader); v != "" {
			now := time.Now()
			if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
				r.mu.Lock()
				r.latencies = append(r.latencies, now.Sub(time.Unix(0, ns)))
				r.delivered++
				if r.first.IsZero() {
					r.first = now
				}
				r.last = now
				r.mu.Unlock()
			}
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(l) }()
	return r, nil
}

// take returns what was recorded since the last take and resets it.
func (r *benchRegion) take() (lat []time.Duration, first, last time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lat, first, last = r.latencies, r.first, r.last
	r.latencies, r.delivered, r.first, r.last = nil, 0, time.Time{}, time.Time{}
	slices.Sort(lat)
	return lat, first, last
}

func (r *benchRegion) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.delivered
}

func (r *benchRegion) url() string { return "http://" + r.l.Addr().String() }

func quantile(lat []time.Duration, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(int(q*float64(len(lat))), len(lat)-1)]
}

func runDrain(ctx context.Context, env *Env) error {
	cluster, err := pgtest.StartCluster(pgtest.Options{Durable: true})
	if err != nil {
		return fmt.Errorf("PostgreSQL for the drain bench: %v", err)
	}
	defer cluster.Destroy()
	dsn := cluster.AdminURL()

	region, err := newBenchRegion()
	if err != nil {
		return err
	}
	defer region.l.Close()

	ports, err := env.Ports(2)
	if err != nil {
		return err
	}
	admin, site := ports[0], ports[1]
	base := site.URL()
	caddyfile := fmt.Sprintf(`{
%s	sentry_silo {
		storage postgres %s
		region us %s
		directory_cache 10m 10m
		drainer {
			region_breaker 5 200ms
		}
	}
}
http://%s {
	route {
		sentry_webhook_capture
		respond "control" 200
	}
}
`, harness.GlobalOptions(admin), dsn, region.url(), site.Addr)
	inst, err := env.Start(admin, caddyfile)
	if err != nil {
		return err
	}
	defer inst.Stop()

	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := seedGitHub(ctx, db, drainMailboxes); err != nil {
		return fmt.Errorf("seeding the directory: %v\n%s", err, inst.Logs())
	}

	c := env.Concurrency
	client := Client(c)
	defer client.CloseIdleConnections()
	var seq atomic.Uint64
	capture := func(ctx context.Context, url string) error {
		i := seq.Add(1)
		inst := 1 + i%drainMailboxes
		body := fmt.Sprintf(`{"installation":{"id":%d},"repository":{"id":%d},"ref":"refs/heads/main","seq":%d}`, 5000+inst, inst, i)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("bench-%d", i))
		req.Header.Set(sentHeader, strconv.FormatInt(time.Now().UnixNano(), 10))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	captureURL := base + "/extensions/github/webhook/"
	if err := capture(ctx, captureURL); err != nil {
		return fmt.Errorf("first capture: %v\n%s", err, inst.Logs())
	}
	if err := waitCount(ctx, region, 1, 30*time.Second); err != nil {
		return fmt.Errorf("first delivery: %v\n%s", err, inst.Logs())
	}
	region.take()

	rate := env.Rate
	if rate == 0 {
		rate = drainRate
	}

	// Baseline: the same webhooks straight to the region, same rate.
	direct := openLoopPost(ctx, c, rate, env.Duration, func(ctx context.Context) error { return capture(ctx, region.url()+"/extensions/github/webhook/") })
	baseLat, _, _ := region.take()

	// Warm-up, then the steady run through capture and the drainer.
	openLoopPost(ctx, c, rate, env.Warmup, func(ctx context.Context) error { return capture(ctx, captureURL) })
	_ = waitDrained(ctx, db, 30*time.Second)
	region.take()
	steady := openLoopPost(ctx, c, rate, env.Duration, func(ctx context.Context) error { return capture(ctx, captureURL) })
	drainedErr := waitDrained(ctx, db, 60*time.Second)
	lat, first, last := region.take()

	// Backlog: the region is down while webhooks pile up (the breaker
	// keeps attempts at zero), then it comes back and the backlog drains.
	region.down.Store(true)
	rssIdle := rssKB(inst)
	var wg sync.WaitGroup
	var backlogErrs atomic.Int64
	per := *drainBacklog / c
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per && ctx.Err() == nil; i++ {
				if capture(ctx, captureURL) != nil {
					backlogErrs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	backlog := pendingRows(ctx, db)
	rssFull := rssKB(inst)
	region.take()
	region.down.Store(false)
	t0 := time.Now()
	peak := rssFull
	_ = harness.Poll(5*time.Minute, func() bool {
		if rss := rssKB(inst); rss > peak {
			peak = rss
		}
		return ctx.Err() != nil || pendingRows(ctx, db) == 0
	})
	drainTime := time.Since(t0)
	backLat, _, _ := region.take()

	fmt.Fprintf(env.Out, "machine: %s; PostgreSQL (fsync on); %d mailboxes; concurrency %d; %s runs after %s warm-up\n",
		env.Machine(), drainMailboxes, c, env.Duration, env.Warmup)
	tw := tabwriter.NewWriter(env.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "run\twebhooks/s sent\tdelivered\tdelivered/s\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\terrors\t\n")
	fmt.Fprintf(tw, "baseline: POST straight to the region\t%.0f\t%d\t%.0f\t%s\t%s\t%s\t%s\t%d\t\n",
		direct.rps(), len(baseLat), direct.rps(), ms(quantile(baseLat, .5)), ms(quantile(baseLat, .99)), ms(quantile(baseLat, .999)), ms(quantile(baseLat, 1)), direct.errors)
	deliveredRate := 0.0
	if len(lat) > 1 && last.After(first) {
		deliveredRate = float64(len(lat)) / last.Sub(first).Seconds()
	}
	fmt.Fprintf(tw, "capture -> drainer -> region\t%.0f\t%d\t%.0f\t%s\t%s\t%s\t%s\t%d\t\n",
		steady.rps(), len(lat), deliveredRate, ms(quantile(lat, .5)), ms(quantile(lat, .99)), ms(quantile(lat, .999)), ms(quantile(lat, 1)), steady.errors)
	tw.Flush()
	fmt.Fprintf(env.Out, "capture-to-region at %.0f/s: p50 %s ms (target <= 50), p99 %s ms (target <= 250); all delivered: %v\n",
		rate, ms(quantile(lat, .5)), ms(quantile(lat, .99)), drainedErr == nil && len(lat) == steady.sent-steady.errors)
	fmt.Fprintf(env.Out, "capture answers (202) meanwhile: p50 %s ms, p99 %s ms, p99.9 %s ms\n",
		ms(quantile(steady.latencies, .5)), ms(quantile(steady.latencies, .99)), ms(quantile(steady.latencies, .999)))
	fmt.Fprintf(env.Out, "backlog: %d webhooks stored while the region was down (%d capture errors); drained in %s = %.0f deliveries/s after it came back\n",
		backlog, backlogErrs.Load(), drainTime.Round(time.Millisecond), float64(len(backLat))/drainTime.Seconds())
	fmt.Fprintf(env.Out, "caddy RSS: %d MiB idle, %d MiB with the backlog stored, %d MiB peak while draining\n",
		rssIdle/1024, rssFull/1024, peak/1024)
	return drainedErr
}

type postResult struct {
	sent, errors int
	elapsed      time.Duration
	latencies    []time.Duration // of the answers, sorted
	cpu          cpuSample       // CPU time the processes spent, when measured
}

func (r postResult) rps() float64 { return float64(r.sent) / r.elapsed.Seconds() }

// openLoopPost calls send at rate per second for d, from up to
// concurrency goroutines at once.
func openLoopPost(ctx context.Context, concurrency int, rate float64, d time.Duration, send func(context.Context) error) postResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	sem := make(chan struct{}, concurrency*4)
	var wg sync.WaitGroup
	var sent, errs atomic.Int64
	var lmu sync.Mutex
	var lat []time.Duration
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := 0; ; i++ {
		next := start.Add(time.Duration(i) * interval)
		if wait := time.Until(next); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sent.Add(1)
			if send(context.WithoutCancel(ctx)) != nil {
				errs.Add(1)
			}
			d := time.Since(next)
			lmu.Lock()
			lat = append(lat, d)
			lmu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	return postResult{sent: int(sent.Load()), errors: int(errs.Load()), elapsed: time.Since(start), latencies: lat}
}

// seedGitHub waits for the migrations, then installs GitHub integrations
// 1..n (external ids 5001..) in organization 1, region us.
func seedGitHub(ctx context.Context, db *sql.DB, n int) error {
	var err error
	var ok bool
	if harness.Poll(60*time.Second, func() bool {
		err = db.QueryRowContext(ctx, `SELECT to_regclass('sentry_organizationintegration') IS NOT NULL AND to_regclass('silo_webhook_payload') IS NOT NULL`).Scan(&ok)
		return (err == nil && ok) || ctx.Err() != nil
	}) != nil || err != nil || !ok {
		return fmt.Errorf("tables never appeared: %v", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES (1, 'acme', 'us', 0)`); err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		if _, err := db.ExecContext(ctx, `INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES ($1, 'github', $2, 'gh', '{}', 0)`, i, strconv.Itoa(5000+i)); err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES ($1, 1, $1, 0)`, i); err != nil {
			return err
		}
	}
	return nil
}

func pendingRows(ctx context.Context, db *sql.DB) int {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM silo_webhook_payload`).Scan(&n); err != nil {
		return -1
	}
	return n
}

func waitDrained(ctx context.Context, db *sql.DB, timeout time.Duration) error {
	if harness.Poll(timeout, func() bool { return ctx.Err() != nil || pendingRows(ctx, db) == 0 }) != nil || ctx.Err() != nil {
		return fmt.Errorf("%d webhooks still pending after %s", pendingRows(ctx, db), timeout)
	}
	return nil
}

func waitCount(ctx context.Context, r *benchRegion, n int, timeout time.Duration) error {
	if harness.Poll(timeout, func() bool { return ctx.Err() != nil || r.count() >= n }) != nil || ctx.Err() != nil {
		return fmt.Errorf("%d of %d delivered after %s", r.count(), n, timeout)
	}
	return nil
}

// rssKB reads the instance's resident set size from /proc (0 elsewhere).
func rssKB(inst *harness.Caddy) int {
	pid := inst.Pid()
	if pid == 0 {
		return 0
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return n
		}
	}
	return 0
}
