package main

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

func init() {
	Register("queue", Scenario{
		Help: "queue table health: sustained capture and drain at -rate (1,000/s) for -queue-duration (10m) on PostgreSQL; the payload table's and indexes' size, dead tuples and autovacuum runs over time, then the drainer's claim queries' plans (EXPLAIN ANALYZE, BUFFERS via auto_explain) with a -queue-backlog (1,000,000) row backlog",
		Run:  runQueue,
	})
}

var (
	queueDuration = flag.Duration("queue-duration", 10*time.Minute, "queue scenario: how long capture and drain run")
	queueSample   = flag.Duration("queue-sample", 30*time.Second, "queue scenario: interval between two samples of the table")
	queueBacklog  = flag.Int("queue-backlog", 1_000_000, "queue scenario: rows of backlog under which the claim queries are explained")
)

// queueSampleSQL reads the payload table's health in one statement.
const queueSampleSQL = `
SELECT pg_relation_size('silo_webhook_payload'),
       pg_indexes_size('silo_webhook_payload'),
       pg_total_relation_size('silo_webhook_payload'),
       n_live_tup, n_dead_tup, autovacuum_count, autoanalyze_count,
       coalesce(extract(epoch FROM now() - last_autovacuum)::int, -1),
       (SELECT count(*) FROM silo_webhook_payload)
FROM pg_stat_user_tables WHERE relname = 'silo_webhook_payload'`

type queueRow struct {
	at                         time.Duration
	heap, indexes, total       int64
	live, dead, vacuums, anlzs int64
	sinceVacuum                int64
	pending                    int64
	captured, delivered        int64
}

func runQueue(ctx context.Context, env *Env) error {
	// auto_explain is loaded in every session and off until the backlog
	// phase turns it on for a few seconds: the plans are those of the
	// drainer's own statements, not copies of them.
	cluster, err := pgtest.StartCluster(pgtest.Options{Durable: true, Settings: map[string]string{
		"shared_preload_libraries":           "'auto_explain'",
		"auto_explain.log_min_duration":      "-1",
		"auto_explain.log_analyze":           "on",
		"auto_explain.log_buffers":           "on",
		"auto_explain.log_nested_statements": "on",
	}})
	if err != nil {
		return fmt.Errorf("PostgreSQL for the queue bench: %v", err)
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
	inst, err := env.Start(admin, fmt.Sprintf(`{
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
`, harness.GlobalOptions(admin), dsn, region.url(), site.Addr))
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
	var seq, captured atomic.Int64
	url := site.URL() + "/extensions/github/webhook/"
	// A push of about 2 KB, GitHub's small end: the size that bloats a
	// table fastest per byte of payload, and stays below TOAST.
	pad := strings.Repeat("x", 1800)
	capture := func(ctx context.Context) error {
		i := seq.Add(1)
		box := 1 + i%drainMailboxes
		body := fmt.Sprintf(`{"installation":{"id":%d},"repository":{"id":%d},"ref":"refs/heads/main","seq":%d,"pad":%q}`, 5000+box, box, i, pad)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("queue-%d", i))
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
		captured.Add(1)
		return nil
	}
	rate := env.Rate
	if rate == 0 {
		rate = drainRate
	}

	fmt.Fprintf(env.Out, "machine: %s; PostgreSQL (fsync on, default autovacuum); %d mailboxes; %.0f/s for %s, a sample every %s\n",
		env.Machine(), drainMailboxes, rate, *queueDuration, *queueSample)
	tw := tabwriter.NewWriter(env.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "t\tcaptured\tdelivered\tpending\theap KiB\tindexes KiB\ttotal KiB\tlive\tdead\tautovacuums\tautoanalyzes\tlast autovacuum s ago\t")
	sample := func(start time.Time) (queueRow, error) {
		r := queueRow{at: time.Since(start).Round(time.Second), captured: captured.Load(), delivered: int64(region.count())}
		err := db.QueryRowContext(ctx, queueSampleSQL).Scan(&r.heap, &r.indexes, &r.total, &r.live, &r.dead, &r.vacuums, &r.anlzs, &r.sinceVacuum, &r.pending)
		return r, err
	}
	printRow := func(r queueRow) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", r.at, r.captured, r.delivered, r.pending,
			r.heap/1024, r.indexes/1024, r.total/1024, r.live, r.dead, r.vacuums, r.anlzs, r.sinceVacuum)
		tw.Flush()
	}
	start := time.Now()
	done := make(chan postResult, 1)
	go func() { done <- openLoopPost(ctx, env.Concurrency, rate, *queueDuration, capture) }()
	tick := time.NewTicker(*queueSample)
	var steady postResult
	var last queueRow
sampling:
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case steady = <-done:
			break sampling
		case <-tick.C:
			r, err := sample(start)
			if err != nil {
				return err
			}
			printRow(r)
			last = r
		}
	}
	tick.Stop()
	_ = waitDrained(ctx, db, 2*time.Minute)
	if r, err := sample(start); err == nil {
		printRow(r)
		last = r
	}
	lat, _, _ := region.take()
	fmt.Fprintf(env.Out, "sustained: %d sent, %d errors, %.0f/s captured; capture-to-region p50 %s ms, p99 %s ms; table after draining: %d KiB heap, %d KiB indexes\n",
		steady.sent, steady.errors, steady.rps(), ms(quantile(lat, .5)), ms(quantile(lat, .99)), last.heap/1024, last.indexes/1024)

	return queueBacklogPlans(ctx, env, cluster, db, region, capture)
}

// queueBacklogPlans stores a backlog of *queueBacklog rows while the
// region is down (copies of one captured row, spread over the mailboxes),
// brings the region back, and prints the plans auto_explain logged for
// the drainer's statements during two seconds of draining.
func queueBacklogPlans(ctx context.Context, env *Env, cluster *pgtest.Cluster, db *sql.DB, region *benchRegion, capture func(context.Context) error) error {
	region.down.Store(true)
	// The template: one webhook captured as any other, kept by the
	// region being down.
	if err := capture(ctx); err != nil {
		return fmt.Errorf("capturing the backlog's template: %v", err)
	}
	t0 := time.Now()
	if _, err := db.ExecContext(ctx, `INSERT INTO silo_webhook_payload (mailbox_name, provider, destination_type, region_name,
			integration_id, request_method, request_path, request_headers, request_body)
		SELECT 'github:us:' || (1 + g % $2), t.provider, t.destination_type, t.region_name, t.integration_id,
			t.request_method, t.request_path, t.request_headers, t.request_body
		FROM generate_series(1, $1) AS g, (SELECT * FROM silo_webhook_payload LIMIT 1) AS t`, *queueBacklog, drainMailboxes); err != nil {
		return fmt.Errorf("storing the backlog: %v", err)
	}
	// As autoanalyze would after a million inserts (2% of the table).
	if _, err := db.ExecContext(ctx, `ANALYZE silo_webhook_payload`); err != nil {
		return err
	}
	stored := time.Since(t0)
	var pending int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM silo_webhook_payload`).Scan(&pending); err != nil {
		return err
	}
	st, err := os.Stat(cluster.LogPath())
	if err != nil {
		return err
	}
	setExplain := func(ms string) error {
		if _, err := db.ExecContext(ctx, `ALTER SYSTEM SET auto_explain.log_min_duration = `+ms); err != nil {
			return err
		}
		_, err := db.ExecContext(ctx, `SELECT pg_reload_conf()`)
		return err
	}
	region.take()
	region.down.Store(false)
	// The breaker opened while the region was down: wait for deliveries
	// to resume, then log two seconds of the drainer's statements.
	if err := waitCount(ctx, region, 100, 2*time.Minute); err != nil {
		return err
	}
	if err := setExplain("0"); err != nil {
		return err
	}
	explained := region.count()
	// Two seconds of the drainer at work on the backlog: the plans are
	// what is measured here, not a wait for something to happen.
	window := time.NewTimer(2 * time.Second)
	select {
	case <-ctx.Done():
	case <-window.C:
	}
	if err := setExplain("-1"); err != nil {
		return err
	}
	delivered := region.count() - explained
	// Then the drain rate with the backlog, plans off.
	before, t1 := region.count(), time.Now()
	rateWindow := time.NewTimer(10 * time.Second)
	select {
	case <-ctx.Done():
	case <-rateWindow.C:
	}
	drainRate := float64(region.count()-before) / time.Since(t1).Seconds()
	fmt.Fprintf(env.Out, "backlog: %d rows pending (stored in %s); %d delivered in the 2 s the plans were logged, then %.0f deliveries/s over 10 s\n",
		pending, stored.Round(time.Millisecond), delivered, drainRate)
	plans, err := logPlans(cluster.LogPath(), st.Size())
	if err != nil {
		return err
	}
	kinds := slices.Sorted(maps.Keys(plans))
	for _, first := range kinds {
		plan := plans[first]
		if strings.HasPrefix(strings.ToUpper(first), "INSERT") || strings.HasPrefix(strings.ToUpper(first), "ALTER") ||
			strings.Contains(first, "pg_reload_conf") {
			continue
		}
		lines := strings.Split(strings.TrimSpace(plan), "\n")
		if len(lines) > 80 {
			lines = append(lines[:80], "	…")
		}
		fmt.Fprintf(env.Out, "\n--- plan of %q ---\n%s\n", first, strings.Join(lines, "\n"))
	}
	return nil
}

// logPlans returns the plans auto_explain wrote to the server log after
// offset, one per statement kind (the first line of its query text).
func logPlans(path string, offset int64) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	plans := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	var cur strings.Builder
	flush := func() {
		text := cur.String()
		cur.Reset()
		if text == "" {
			return
		}
		_, query, ok := strings.Cut(text, "Query Text:")
		if !ok {
			return
		}
		first := strings.TrimSpace(strings.SplitN(strings.TrimSpace(query), "\n", 2)[0])
		if _, seen := plans[first]; !seen {
			plans[first] = text
		}
	}
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "LOG:  duration:") {
			flush()
		}
		if cur.Len() > 0 || strings.Contains(line, "LOG:  duration:") {
			cur.WriteString(line)
			cur.WriteByte('\n')
		}
	}
	flush()
	return plans, sc.Err()
}
