package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

func init() {
	Register("capture", Scenario{
		Help: "durable webhook capture (202 after commit) on PostgreSQL (fsync on, synchronous_commit on) and on the SQLite default; baseline: a raw pgx single-row INSERT loop at the same concurrency",
		Run:  runCapture,
	})
}

// captureIntegrations is how many GitHub installations the load spreads
// over (one mailbox each).
const captureIntegrations = 100

// captureBody is a GitHub push of a realistic size (~1.3 KB).
var captureBody = func() string {
	pad := strings.Repeat("x", 1100)
	return `{"ref":"refs/heads/main","before":"0000","after":"1111","repository":{"id":%d,"full_name":"acme/app"},"installation":{"id":%d},"head_commit":{"message":"` + pad + `"}}`
}()

var captureHeaders = map[string]string{
	"Content-Type":        "application/json",
	"User-Agent":          "GitHub-Hookshot/abc123",
	"X-GitHub-Event":      "push",
	"X-GitHub-Hook-ID":    "123456",
	"X-Hub-Signature":     "sha1=0123456789abcdef0123456789abcdef01234567",
	"X-Hub-Signature-256": "sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
}

type captureTarget struct {
	url    string
	seq    atomic.Uint64
	prefix string
}

// send posts one push for installation 5001..5100 with a fresh delivery id
// and wants its 202.
func (t *captureTarget) send(ctx context.Context, c *http.Client) error {
	i := t.seq.Add(1)
	inst := 5001 + int(i%captureIntegrations)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, strings.NewReader(fmt.Sprintf(captureBody, i, inst)))
	if err != nil {
		return err
	}
	for k, v := range captureHeaders {
		req.Header.Set(k, v)
	}
	req.Header.Set("X-GitHub-Delivery", t.prefix+strconv.FormatUint(i, 10))
	resp, err := c.Do(req)
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

// closedLoop runs concurrency workers calling op back to back for d.
func closedLoop(ctx context.Context, concurrency int, d time.Duration, op func(context.Context) error) postResult {
	var wg sync.WaitGroup
	var errs atomic.Int64
	lats := make([][]time.Duration, concurrency)
	start := time.Now()
	deadline := start.Add(d)
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, 1<<14)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				if op(ctx) != nil {
					errs.Add(1)
					continue
				}
				l = append(l, time.Since(t0))
			}
			lats[w] = l
		}()
	}
	wg.Wait()
	r := postResult{errors: int(errs.Load()), elapsed: time.Since(start)}
	for _, l := range lats {
		r.latencies = append(r.latencies, l...)
	}
	r.sent = len(r.latencies)
	slices.Sort(r.latencies)
	return r
}

func runCapture(ctx context.Context, env *Env) error {
	cluster, err := pgtest.StartCluster(pgtest.Options{Durable: true})
	if err != nil {
		return fmt.Errorf("PostgreSQL for the capture bench: %v", err)
	}
	defer cluster.Destroy()
	dsn := cluster.AdminURL()

	pg, err := startCaptureInstance(env, "postgres "+dsn)
	if err != nil {
		return err
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := seedGitHub(ctx, db, captureIntegrations); err != nil {
		return err
	}
	var syncCommit, fsync string
	_ = db.QueryRowContext(ctx, `SHOW synchronous_commit`).Scan(&syncCommit)
	_ = db.QueryRowContext(ctx, `SHOW fsync`).Scan(&fsync)

	pool, err := pgxpool.New(ctx, dsn+poolSuffix(dsn, env.Concurrency))
	if err != nil {
		return err
	}
	defer pool.Close()
	var rawSeq atomic.Uint64
	rawHeaders := `{"Content-Type":["application/json"],"User-Agent":["GitHub-Hookshot/abc123"],"X-Github-Event":["push"],"X-Github-Hook-Id":["123456"],"X-Hub-Signature":["sha1=0123456789abcdef0123456789abcdef01234567"],"X-Hub-Signature-256":["sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"],"X-Github-Delivery":["raw"]}`
	rawInsert := func(ctx context.Context) error {
		i := rawSeq.Add(1)
		inst := 1 + int(i%captureIntegrations)
		_, err := pool.Exec(ctx, `INSERT INTO silo_webhook_payload (mailbox_name, provider, region_name, integration_id,
			request_method, request_path, request_headers, request_body, delivery_key) VALUES ($1, 'github', 'us', $2, 'POST', '/extensions/github/webhook/', $3, $4, $5)`,
			"github:us:"+strconv.Itoa(inst), inst, rawHeaders, []byte(fmt.Sprintf(captureBody, i, 5000+inst)), "raw-"+strconv.FormatUint(i, 10))
		return err
	}

	c := Client(env.Concurrency)
	pgTarget := &captureTarget{url: pg.base + "/extensions/github/webhook/", prefix: "pg-"}
	capturePG := func(ctx context.Context) error { return pgTarget.send(ctx, c) }

	// Warm up both, then alternate rounds so drift on a shared machine
	// hits both alike.
	closedLoop(ctx, env.Concurrency, env.Warmup, rawInsert)
	closedLoop(ctx, env.Concurrency, env.Warmup, capturePG)
	per := env.Duration / time.Duration(env.Rounds)
	var raw, capt []postResult
	for r := range env.Rounds {
		if r%2 == 0 {
			raw = append(raw, closedLoop(ctx, env.Concurrency, per, rawInsert))
			capt = append(capt, closedLoop(ctx, env.Concurrency, per, capturePG))
		} else {
			capt = append(capt, closedLoop(ctx, env.Concurrency, per, capturePG))
			raw = append(raw, closedLoop(ctx, env.Concurrency, per, rawInsert))
		}
	}
	rawR, captR := combinePost(raw), combinePost(capt)
	if env.Profile != "" {
		if err := pg.inst.Profile(env.Profile, 5*time.Second, func() { closedLoop(ctx, env.Concurrency, 5*time.Second, capturePG) }); err != nil {
			return err
		}
	}
	half := captR.rps() / 2
	if env.Rate > 0 {
		half = env.Rate
	}
	// The baseline at the same open-loop rate, right before: PostgreSQL's
	// own stalls (checkpoints, autovacuum) show in both.
	openRaw := openLoopPost(ctx, env.Concurrency, half, env.Duration/2, rawInsert)
	openPG := openLoopPost(ctx, env.Concurrency, half, env.Duration/2, capturePG)
	stored := pendingRows(ctx, db)

	// The SQLite default, same load.
	lite, err := startCaptureInstance(env, "sqlite "+filepath.Join(pg.dir, "silo.db"))
	if err != nil {
		return err
	}
	liteDB, err := sql.Open("sqlite", filepath.Join(pg.dir, "silo.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer liteDB.Close()
	if err := seedGitHubSQLite(ctx, liteDB, captureIntegrations); err != nil {
		return err
	}
	liteTarget := &captureTarget{url: lite.base + "/extensions/github/webhook/", prefix: "lite-"}
	captureLite := func(ctx context.Context) error { return liteTarget.send(ctx, c) }
	closedLoop(ctx, env.Concurrency, env.Warmup, captureLite)
	liteR := closedLoop(ctx, env.Concurrency, env.Duration/2, captureLite)
	openLite := openLoopPost(ctx, env.Concurrency, liteR.rps()/2, env.Duration/2, captureLite)

	fmt.Fprintf(env.Out, "machine: %s; PostgreSQL fsync=%s synchronous_commit=%s; %d integrations; concurrency %d; closed loop %s in %d alternating rounds, open loop %s\n",
		env.Machine(), fsync, syncCommit, captureIntegrations, env.Concurrency, env.Duration, env.Rounds, env.Duration/2)
	tw := tabwriter.NewWriter(env.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "what\trows/s\tp50 ms\tp99 ms\terrors\t\n")
	fmt.Fprintf(tw, "baseline: raw pgx single-row INSERT\t%.0f\t%s\t%s\t%d\t\n", rawR.rps(), ms(quantile(rawR.latencies, .5)), ms(quantile(rawR.latencies, .99)), rawR.errors)
	fmt.Fprintf(tw, "capture, PostgreSQL, closed loop\t%.0f\t%s\t%s\t%d\t\n", captR.rps(), ms(quantile(captR.latencies, .5)), ms(quantile(captR.latencies, .99)), captR.errors)
	fmt.Fprintf(tw, "baseline: raw INSERT, open loop at %.0f/s\t%.0f\t%s\t%s\t%d\t\n", half, openRaw.rps(), ms(quantile(openRaw.latencies, .5)), ms(quantile(openRaw.latencies, .99)), openRaw.errors)
	fmt.Fprintf(tw, "capture, PostgreSQL, open loop at %.0f/s\t%.0f\t%s\t%s\t%d\t\n", half, openPG.rps(), ms(quantile(openPG.latencies, .5)), ms(quantile(openPG.latencies, .99)), openPG.errors)
	fmt.Fprintf(tw, "capture, SQLite, closed loop\t%.0f\t%s\t%s\t%d\t\n", liteR.rps(), ms(quantile(liteR.latencies, .5)), ms(quantile(liteR.latencies, .99)), liteR.errors)
	fmt.Fprintf(tw, "capture, SQLite, open loop at %.0f/s\t%.0f\t%s\t%s\t%d\t\n", liteR.rps()/2, openLite.rps(), ms(quantile(openLite.latencies, .5)), ms(quantile(openLite.latencies, .99)), openLite.errors)
	_ = tw.Flush()
	fmt.Fprintf(env.Out, "capture/raw INSERT: %.2fx (target >= 0.60x); PostgreSQL %.0f/s (target >= 10000); SQLite %.0f/s (target >= 5000); p99 at half peak %s ms (target <= 25)\n",
		captR.rps()/rawR.rps(), captR.rps(), liteR.rps(), ms(quantile(openPG.latencies, .99)))
	fmt.Fprintf(env.Out, "rows in PostgreSQL after the run: %d (raw INSERTs + acknowledged captures)\n", stored)
	return nil
}

func combinePost(rs []postResult) postResult {
	var out postResult
	for _, r := range rs {
		out.sent += r.sent
		out.errors += r.errors
		out.elapsed += r.elapsed
		out.latencies = append(out.latencies, r.latencies...)
	}
	slices.Sort(out.latencies)
	return out
}

func poolSuffix(dsn string, conns int) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return fmt.Sprintf("%spool_max_conns=%d", sep, conns)
}

type captureInstance struct {
	inst *Instance
	base string
	dir  string
}

// startCaptureInstance runs capture with the drainer off, so the figures
// are the capture path alone.
func startCaptureInstance(env *Env, storage string) (*captureInstance, error) {
	ports := make([]int, 2)
	for i := range ports {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	dir, err := env.TempDir()
	if err != nil {
		return nil, err
	}
	admin := fmt.Sprintf("127.0.0.1:%d", ports[0])
	caddyfile := fmt.Sprintf(`{
%s	sentry_silo {
		storage %s
		region us http://127.0.0.1:9
		drainer {
			off
		}
	}
}
http://127.0.0.1:%d {
	route {
		sentry_webhook_capture
		respond "control" 200
	}
}
`, GlobalOptions(admin), storage, ports[1])
	inst, err := env.Start(admin, caddyfile)
	if err != nil {
		return nil, err
	}
	return &captureInstance{inst: inst, base: fmt.Sprintf("http://127.0.0.1:%d", ports[1]), dir: dir}, nil
}

// seedGitHubSQLite is seedGitHub for the SQLite instance.
func seedGitHubSQLite(ctx context.Context, db *sql.DB, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		var k int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM sentry_organizationintegration`).Scan(&k)
		if err == nil {
			err = db.QueryRowContext(ctx, `SELECT count(*) FROM silo_webhook_payload`).Scan(&k)
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("tables never appeared: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES (1, 'acme', 'us', 0)`); err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		if _, err := db.ExecContext(ctx, `INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES (?, 'github', ?, 'gh', '{}', 0)`, i, strconv.Itoa(5000+i)); err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES (?, 1, ?, 0)`, i, i); err != nil {
			return err
		}
	}
	return nil
}
