package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
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
	Register("drain-parallel", Scenario{
		Help: "skip-on-failure (GitHub) backlog drained with mailbox_concurrency 1 (serial) and the default, alternating rounds, in one mailbox and over 100; PostgreSQL",
		Run:  runDrainParallel,
	})
}

var (
	parallelBacklog = flag.Int("drain-parallel-backlog", 20_000, "drain-parallel: GitHub webhooks stored while the region is down, per round")
	parallelLatency = flag.Duration("drain-parallel-latency", 0, "drain-parallel: how long the fake region takes to answer each delivery")
	parallelLevels  = flag.String("drain-parallel-concurrency", "1,default",
		"drain-parallel: mailbox_concurrency values to compare, the first being the baseline; default leaves the option out (the binary's default)")
	parallelLayouts = flag.String("drain-parallel-layouts", "one,spread", "drain-parallel: one (one integration, one repository: one mailbox) and/or spread (100 integrations: 100 mailboxes)")
)

// parallelRegion is a fake region that counts what a backlog drain sends
// it: deliveries, distinct GitHub delivery ids (a row sent twice shows),
// the most requests in flight at once, and the first and last delivery.
// While down it answers 503.
type parallelRegion struct {
	l       net.Listener
	latency time.Duration
	down    atomic.Bool

	mu          sync.Mutex
	cur, most   int
	delivered   int
	ids         map[string]struct{}
	first, last time.Time
}

func newParallelRegion(latency time.Duration) (*parallelRegion, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &parallelRegion{l: l, latency: latency, ids: map[string]struct{}{}}
	go func() { _ = http.Serve(l, r) }()
	return r, nil
}

func (r *parallelRegion) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	_, _ = io.Copy(io.Discard, req.Body)
	if r.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	r.mu.Lock()
	r.cur++
	r.most = max(r.most, r.cur)
	r.mu.Unlock()
	if r.latency > 0 {
		time.Sleep(r.latency) // the region's own work
	}
	now := time.Now()
	r.mu.Lock()
	r.cur--
	if req.Header.Get("X-GitHub-Delivery") != "" {
		r.ids[req.Header.Get("X-GitHub-Delivery")] = struct{}{}
		r.delivered++
		if r.first.IsZero() {
			r.first = now
		}
		r.last = now
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// parallelRound is what one backlog drain measured.
type parallelRound struct {
	delivered, distinct, most int
	first, last               time.Time
	wall                      time.Duration // region up to the store empty
}

// rate is deliveries per second from the first delivery to the last.
func (p parallelRound) rate() float64 {
	if !p.last.After(p.first) {
		return 0
	}
	return float64(p.delivered) / p.last.Sub(p.first).Seconds()
}

func (r *parallelRegion) take() parallelRound {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := parallelRound{delivered: r.delivered, distinct: len(r.ids), most: r.most, first: r.first, last: r.last}
	r.delivered, r.most, r.ids, r.first, r.last = 0, 0, map[string]struct{}{}, time.Time{}, time.Time{}
	return out
}

func (r *parallelRegion) url() string { return "http://" + r.l.Addr().String() }

// parallelLayout is how the backlog is spread: over how many GitHub
// installations (one mailbox each, the repository being the same).
type parallelLayout struct {
	name          string
	installations int
}

// parseParallelLevels reads -drain-parallel-concurrency; 0 stands for
// default (the option left out).
func parseParallelLevels() ([]int, error) {
	var out []int
	for _, s := range strings.Split(*parallelLevels, ",") {
		s = strings.TrimSpace(s)
		if s == "default" {
			out = append(out, 0)
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-drain-parallel-concurrency: %q is neither default nor a positive integer", s)
		}
		out = append(out, n)
	}
	if len(out) < 2 {
		return nil, fmt.Errorf("-drain-parallel-concurrency: give a baseline and at least one value to compare")
	}
	return out, nil
}

func parseParallelLayouts() ([]parallelLayout, error) {
	var out []parallelLayout
	for _, s := range strings.Split(*parallelLayouts, ",") {
		switch strings.TrimSpace(s) {
		case "one":
			out = append(out, parallelLayout{"one mailbox", 1})
		case "spread":
			out = append(out, parallelLayout{"100 mailboxes", drainMailboxes})
		default:
			return nil, fmt.Errorf("-drain-parallel-layouts: %q is neither one nor spread", s)
		}
	}
	return out, nil
}

func runDrainParallel(ctx context.Context, env *Env) error {
	levels, err := parseParallelLevels()
	if err != nil {
		return err
	}
	layouts, err := parseParallelLayouts()
	if err != nil {
		return err
	}
	cluster, err := pgtest.StartCluster(pgtest.Options{Durable: true})
	if err != nil {
		return fmt.Errorf("PostgreSQL for the drain-parallel bench: %v", err)
	}
	defer cluster.Destroy()
	dsn := cluster.AdminURL()
	region, err := newParallelRegion(*parallelLatency)
	if err != nil {
		return err
	}
	defer region.l.Close()
	ports, err := env.Ports(2)
	if err != nil {
		return err
	}
	admin, site := ports[0], ports[1]
	// GitHub's mailboxes are per repository and event type (no volume
	// split), so the one-mailbox layout is one busy repository's pushes;
	// round checks the mailboxes it stored.
	config := func(concurrency int) string {
		option := ""
		if concurrency > 0 {
			option = fmt.Sprintf("mailbox_concurrency %d", concurrency)
		}
		return fmt.Sprintf(`{
%s	sentry_silo {
		storage postgres %s
		region us %s
		directory_cache 10m 10m
		drainer {
			region_breaker 5 200ms
			%s
		}
	}
}
http://%s {
	route {
		sentry_webhook_capture
		respond "control" 200
	}
}
`, harness.GlobalOptions(admin), dsn, region.url(), option, site.Addr)
	}
	inst, err := env.Start(admin, config(levels[0]))
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

	client := Client(env.Concurrency)
	defer client.CloseIdleConnections()
	var seq atomic.Uint64
	captureURL := site.URL() + "/extensions/github/webhook/"
	capture := func(installations int) error {
		i := seq.Add(1)
		inst := 1 + i%uint64(installations)
		body := fmt.Sprintf(`{"installation":{"id":%d},"repository":{"id":%d},"ref":"refs/heads/main","seq":%d}`, 5000+inst, inst, i)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, captureURL, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("parallel-%d", i))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("capture answered %d", resp.StatusCode)
		}
		return nil
	}

	// One backlog drain: store the backlog with the region down, bring it
	// up, wait for the store to be empty.
	round := func(l parallelLayout, concurrency int) (parallelRound, error) {
		if err := inst.TryReload(config(concurrency)); err != nil {
			return parallelRound{}, err
		}
		// The old config's server closes its keep-alive connections; a
		// POST sent on one would fail (POSTs are not retried).
		client.CloseIdleConnections()
		region.down.Store(true)
		var wg sync.WaitGroup
		var errs atomic.Int64
		per := *parallelBacklog / env.Concurrency
		for w := 0; w < env.Concurrency; w++ {
			n := per
			if w == 0 {
				n += *parallelBacklog % env.Concurrency
			}
			wg.Go(func() {
				for i := 0; i < n && ctx.Err() == nil; i++ {
					if capture(l.installations) != nil {
						errs.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if n := errs.Load(); n > 0 {
			return parallelRound{}, fmt.Errorf("%d captures failed", n)
		}
		if n := pendingRows(ctx, db); n != *parallelBacklog {
			return parallelRound{}, fmt.Errorf("%d rows stored, want %d", n, *parallelBacklog)
		}
		if n := storedMailboxes(ctx, db); n != l.installations {
			return parallelRound{}, fmt.Errorf("the backlog is in %d mailboxes, want %d", n, l.installations)
		}
		region.take()
		region.down.Store(false)
		t0 := time.Now()
		if err := harness.Poll(30*time.Minute, func() bool { return ctx.Err() != nil || pendingRows(ctx, db) == 0 }); err != nil || ctx.Err() != nil {
			return parallelRound{}, fmt.Errorf("%d rows still pending: %v", pendingRows(ctx, db), err)
		}
		r := region.take()
		r.wall = time.Since(t0)
		if r.delivered != *parallelBacklog || r.distinct != *parallelBacklog {
			return r, fmt.Errorf("%d deliveries of %d distinct rows, want %d of each", r.delivered, r.distinct, *parallelBacklog)
		}
		return r, nil
	}

	fmt.Fprintf(env.Out, "machine: %s; PostgreSQL (fsync on); backlog %d GitHub webhooks per round; region answers in %s; default workers; %d alternating rounds\n",
		env.Machine(), *parallelBacklog, *parallelLatency, env.Rounds)
	tw := tabwriter.NewWriter(env.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "layout\tmailbox_concurrency\tround\tdrained in s\tdeliveries/s\tmost in flight\tdelivered twice\t\n")
	rates := map[string]map[int][]float64{}
	for _, l := range layouts {
		rates[l.name] = map[int][]float64{}
		for r := 0; r < env.Rounds; r++ {
			order := slices.Clone(levels)
			if r%2 == 1 {
				slices.Reverse(order)
			}
			for _, c := range order {
				res, err := round(l, c)
				if err != nil {
					tw.Flush()
					return fmt.Errorf("%s, mailbox_concurrency %s: %v\n%s", l.name, levelName(c), err, inst.Logs())
				}
				rates[l.name][c] = append(rates[l.name][c], res.rate())
				fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.0f\t%d\t%d\t\n", l.name, levelName(c), r+1, res.wall.Seconds(), res.rate(), res.most, res.delivered-res.distinct)
			}
		}
	}
	tw.Flush()
	for _, l := range layouts {
		base := rates[l.name][levels[0]]
		for _, c := range levels[1:] {
			var per []string
			for i, v := range rates[l.name][c] {
				per = append(per, fmt.Sprintf("%.2f", v/base[i]))
			}
			fmt.Fprintf(env.Out, "%s: mailbox_concurrency %s drains at %.0f/s (median), %.2fx mailbox_concurrency %s's %.0f/s; per round %s\n",
				l.name, levelName(c), medianOf(rates[l.name][c]), medianOf(rates[l.name][c])/medianOf(base), levelName(levels[0]), medianOf(base), strings.Join(per, " "))
		}
	}
	return nil
}

// storedMailboxes is how many mailboxes hold the rows stored, -1 if the
// query failed.
func storedMailboxes(ctx context.Context, db *sql.DB) int {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(DISTINCT mailbox_name) FROM silo_webhook_payload`).Scan(&n); err != nil {
		return -1
	}
	return n
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func levelName(c int) string {
	if c == 0 {
		return "default"
	}
	return strconv.Itoa(c)
}
