package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
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
	Register("delivered", Scenario{
		Help: "the delivered history's cost (drainer delivered_retention) on PostgreSQL: capture while draining and backlog drain, with it on against off in alternating rounds on one instance",
		Run:  runDelivered,
	})
}

// deliveredBacklogN is the backlog each round drains (-delivered-backlog).
var deliveredBacklogN = flag.Int("delivered-backlog", 20_000, "delivered scenario: webhooks stored while the region is down, per round")

// deliveredRound is one measured round with the history on or off.
type deliveredRound struct {
	on bool
	// Capture while the drainer delivers (closed loop).
	captures  Result
	delivered int // by the drainer during the capture run
	// Backlog drain after the region comes back.
	backlog   int
	drainTime time.Duration
}

func (r deliveredRound) drainRate() float64 { return float64(r.backlog) / r.drainTime.Seconds() }

func runDelivered(ctx context.Context, env *Env) error {
	cluster, err := pgtest.StartCluster(pgtest.Options{Durable: true})
	if err != nil {
		return fmt.Errorf("PostgreSQL for the delivered bench: %v", err)
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
	config := func(on bool) string {
		retention := ""
		if on {
			retention = "\t\t\tdelivered_retention 1h\n"
		}
		return fmt.Sprintf(`{
%s	sentry_silo {
		storage postgres %s
		region us %s
		directory_cache 10m 10m
		drainer {
			region_breaker 5 200ms
%s		}
	}
}
http://%s {
	route {
		sentry_webhook_capture
		respond "control" 200
	}
}
`, harness.GlobalOptions(admin), dsn, region.url(), retention, site.Addr)
	}
	inst, err := env.Start(admin, config(false))
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
	capture := githubCapture(client, site.URL()+"/extensions/github/webhook/")
	if err := capture(ctx); err != nil {
		return fmt.Errorf("first capture: %v\n%s", err, inst.Logs())
	}
	if err := waitCount(ctx, region, 1, 30*time.Second); err != nil {
		return fmt.Errorf("first delivery: %v\n%s", err, inst.Logs())
	}
	region.take()

	// Alternating rounds, the order flipped each round (off, on, on,
	// off, ...), so that a slow phase of the machine hits both.
	rounds := max(env.Rounds, 2)
	per := env.Duration / time.Duration(rounds)
	var results []deliveredRound
	for i := range rounds {
		for k, on := range []bool{false, true} {
			if i%2 == 1 {
				on = k == 0
			}
			if err := inst.TryReload(config(on)); err != nil {
				return err
			}
			if err := waitRetention(ctx, inst, on); err != nil {
				return err
			}
			r, err := deliveredRoundRun(ctx, env, db, region, capture, per, on)
			if err != nil {
				return fmt.Errorf("round %d (history %v): %v\n%s", i+1, on, err, inst.Logs())
			}
			results = append(results, r)
		}
	}
	var kept int
	_ = db.QueryRowContext(ctx, `SELECT count(*) FROM silo_delivered`).Scan(&kept)
	printDelivered(env, results, kept)
	return nil
}

// githubCapture posts GitHub pushes spread over drainMailboxes mailboxes.
func githubCapture(client *http.Client, url string) func(context.Context) error {
	var seq atomic.Uint64
	return func(ctx context.Context) error {
		i := seq.Add(1)
		inst := 1 + i%drainMailboxes
		body := fmt.Sprintf(`{"installation":{"id":%d},"repository":{"id":%d},"ref":"refs/heads/main","seq":%d}`, 5000+inst, inst, i)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("hist-%d", i))
		req.Header.Set(sentHeader, strconv.FormatInt(time.Now().UnixNano(), 10))
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
}

// waitRetention waits until the running drainer is the one of the config
// just loaded (the admin API's status shows its retention).
func waitRetention(ctx context.Context, inst *harness.Caddy, on bool) error {
	want := 0.0
	if on {
		want = 3600
	}
	var last string
	err := harness.Poll(30*time.Second, func() bool {
		resp, err := inst.AdminGet(ctx, "/sentry_silo/status")
		if err != nil {
			last = err.Error()
			return ctx.Err() != nil
		}
		defer resp.Body.Close()
		var st struct {
			Drainer *struct {
				Running   bool    `json:"running"`
				Retention float64 `json:"delivered_retention_seconds"`
			} `json:"drainer"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Drainer == nil {
			last = fmt.Sprint("status: ", err)
			return false
		}
		return st.Drainer.Running && st.Drainer.Retention == want
	})
	if err != nil {
		return fmt.Errorf("the drainer with delivered history %v never ran: %v (%s)", on, err, last)
	}
	return nil
}

// deliveredRoundRun measures one round: captures at full speed while the
// drainer delivers, then a backlog stored while the region is down and
// drained once it is back.
func deliveredRoundRun(ctx context.Context, env *Env, db *sql.DB, region *benchRegion, capture func(context.Context) error, d time.Duration, on bool) (deliveredRound, error) {
	r := deliveredRound{on: on}
	c := env.Concurrency
	closedLoopPost(ctx, c, env.Warmup, capture)
	if err := waitDrained(ctx, db, 60*time.Second); err != nil {
		return r, err
	}
	region.take()
	r.captures = closedLoopPost(ctx, c, d, capture)
	r.delivered = region.count()
	if err := waitDrained(ctx, db, 120*time.Second); err != nil {
		return r, err
	}
	region.down.Store(true)
	closedLoopN(ctx, c, *deliveredBacklogN, capture)
	r.backlog = pendingRows(ctx, db)
	region.take()
	region.down.Store(false)
	t0 := time.Now()
	if err := waitDrained(ctx, db, 5*time.Minute); err != nil {
		return r, err
	}
	r.drainTime = time.Since(t0)
	region.take()
	return r, nil
}

// closedLoopPost runs concurrency workers calling send back to back for d.
func closedLoopPost(ctx context.Context, concurrency int, d time.Duration, send func(context.Context) error) Result {
	var wg sync.WaitGroup
	lat := make([][]time.Duration, concurrency)
	errs := make([]int, concurrency)
	start := time.Now()
	deadline := start.Add(d)
	for w := range concurrency {
		wg.Go(func() {
			l := make([]time.Duration, 0, 1<<14)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				if send(ctx) != nil {
					errs[w]++
					continue
				}
				l = append(l, time.Since(t0))
			}
			lat[w] = l
		})
	}
	wg.Wait()
	return merge(lat, errs, time.Since(start), 0)
}

// closedLoopN sends n requests from concurrency workers.
func closedLoopN(ctx context.Context, concurrency, n int, send func(context.Context) error) {
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for ctx.Err() == nil && left.Add(-1) >= 0 {
				_ = send(ctx)
			}
		})
	}
	wg.Wait()
}

func printDelivered(env *Env, results []deliveredRound, kept int) {
	fmt.Fprintf(env.Out, "machine: %s; PostgreSQL (fsync on); %d mailboxes; concurrency %d; %d rounds of %s capture + %d backlog, history off and on alternately\n",
		env.Machine(), drainMailboxes, env.Concurrency, len(results)/2, env.Duration/time.Duration(len(results)/2), *deliveredBacklogN)
	tw := tabwriter.NewWriter(env.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "history\tcaptures/s while draining\tcapture p99 ms\tdelivered meanwhile\terrors\tbacklog\tdrained in\tdeliveries/s\t\n")
	var capOn, capOff, drainOn, drainOff []float64
	for _, r := range results {
		state := "off"
		if r.on {
			state = "on"
			capOn, drainOn = append(capOn, r.captures.RPS()), append(drainOn, r.drainRate())
		} else {
			capOff, drainOff = append(capOff, r.captures.RPS()), append(drainOff, r.drainRate())
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%d\t%d\t%d\t%s\t%.0f\t\n", state, r.captures.RPS(), ms(r.captures.P(.99)), r.delivered,
			r.captures.Errors, r.backlog, r.drainTime.Round(time.Millisecond), r.drainRate())
	}
	tw.Flush()
	fmt.Fprintf(env.Out, "history on / off (medians): capture while draining %.0f / %.0f/s = %.2fx; backlog drain %.0f / %.0f deliveries/s = %.2fx; rows kept in silo_delivered at the end: %d\n",
		median(capOn), median(capOff), median(capOn)/median(capOff), median(drainOn), median(drainOff), median(drainOn)/median(drainOff), kept)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}
