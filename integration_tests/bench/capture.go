package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
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
	return gathered(lats, int(errs.Load()), time.Since(start))
}

// gathered is the result of workers that each kept their own latencies.
func gathered(lats [][]time.Duration, errors int, elapsed time.Duration) postResult {
	r := postResult{errors: errors, elapsed: elapsed}
	for _, l := range lats {
		r.latencies = append(r.latencies, l...)
	}
	r.sent = len(r.latencies)
	slices.Sort(r.latencies)
	return r
}

func runCapture(ctx context.Context, env *Env) error {
	cluster, err := pgtest.StartCluster(pgtest.Options{Durable: true, Settings: benchPostgresSettings})
	if err != nil {
		return fmt.Errorf("PostgreSQL for the capture bench: %v", err)
	}
	defer cluster.Destroy()
	dsn := cluster.AdminURL()

	pg, err := startCaptureInstance(env, "", "postgres "+dsn)
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
	if err := prewarmWAL(ctx, db); err != nil {
		return fmt.Errorf("pre-creating the WAL: %v", err)
	}
	var syncCommit, fsync, fpw, walSize, sharedBuffers string
	_ = db.QueryRowContext(ctx, `SHOW synchronous_commit`).Scan(&syncCommit)
	_ = db.QueryRowContext(ctx, `SHOW fsync`).Scan(&fsync)
	_ = db.QueryRowContext(ctx, `SHOW full_page_writes`).Scan(&fpw)
	_ = db.QueryRowContext(ctx, `SHOW max_wal_size`).Scan(&walSize)
	_ = db.QueryRowContext(ctx, `SHOW shared_buffers`).Scan(&sharedBuffers)

	var walStart string
	_ = db.QueryRowContext(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&walStart)

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
			"github:us:"+strconv.Itoa(inst), inst, rawHeaders, captureBody(nil, i, 5000+inst), "raw-"+strconv.FormatUint(i, 10))
		return err
	}

	pgTarget := newCaptureTarget(pg.base, "pg-", env.Concurrency*4)
	defer pgTarget.client.Close()
	capturePG := pgTarget.send
	// The duplicate storm: the same capture, every delivery id sent twice
	// by two workers at about the same time, in the same rounds.
	stormTarget := newCaptureTarget(pg.base, "storm-", env.Concurrency*4)
	stormTarget.repeat = true
	defer stormTarget.client.Close()

	// Warm up both, then alternate rounds so drift on a shared machine
	// hits both alike.
	closedLoop(ctx, env.Concurrency, env.Warmup, rawInsert)
	closedLoop(ctx, env.Concurrency, env.Warmup, capturePG)
	if env.Storm {
		closedLoop(ctx, env.Concurrency, env.Warmup, stormTarget.send)
	}
	// The floor: the same request answered by the route's next handler in
	// the same Caddy, which capture passes it to without reading the body.
	// What capture costs is its CPU per row above this one, in the same
	// rounds.
	floor := newCaptureTarget(pg.base, "floor-", env.Concurrency*4)
	floor.path, floor.want = "/not-a-webhook/", http.StatusOK
	defer floor.client.Close()
	closedLoop(ctx, env.Concurrency, env.Warmup, floor.send)
	per := env.Duration / time.Duration(env.Rounds)
	pgMeter := cpuMeter{caddy: pg.inst.Pid(), postgres: cluster.ServerPID()}
	rawMeter := cpuMeter{postgres: cluster.ServerPID()}
	rawRound := func() postResult {
		return metered(rawMeter, func() postResult { return closedLoop(ctx, env.Concurrency, per, rawInsert) })
	}
	var batching rhythm
	captRound := func() postResult {
		x0 := xids(ctx, db)
		r := metered(pgMeter, func() postResult { return closedLoop(ctx, env.Concurrency, per, capturePG) })
		if x1 := xids(ctx, db); x0 >= 0 && x1 >= 0 {
			// Every writing transaction takes an xid: the group
			// commits, and the notifier's NOTIFY (one per 20 ms, ~3%
			// of them at 10 rows per commit), so the batch printed is
			// a little low.
			batching.rows += int64(r.sent)
			batching.commits += x1 - x0
		}
		return r
	}
	stormRound := func() postResult {
		return metered(pgMeter, func() postResult { return closedLoop(ctx, env.Concurrency, per, stormTarget.send) })
	}
	// -compare-binary: the same load on a second Caddy, same database,
	// in the same alternating rounds.
	var cmpRound, cmpStormRound func() postResult
	if env.CompareBinary != "" {
		cmp, err := startCaptureInstance(env, env.CompareBinary, "postgres "+dsn)
		if err != nil {
			return err
		}
		cmpTarget := newCaptureTarget(cmp.base, "cmp-", env.Concurrency*4)
		defer cmpTarget.client.Close()
		cmpStorm := newCaptureTarget(cmp.base, "cmp-storm-", env.Concurrency*4)
		cmpStorm.repeat = true
		defer cmpStorm.client.Close()
		cmpMeter := cpuMeter{caddy: cmp.inst.Pid(), postgres: cluster.ServerPID()}
		closedLoop(ctx, env.Concurrency, env.Warmup, cmpTarget.send)
		if env.Storm {
			closedLoop(ctx, env.Concurrency, env.Warmup, cmpStorm.send)
		}
		cmpRound = func() postResult {
			return metered(cmpMeter, func() postResult { return closedLoop(ctx, env.Concurrency, per, cmpTarget.send) })
		}
		cmpStormRound = func() postResult {
			return metered(cmpMeter, func() postResult { return closedLoop(ctx, env.Concurrency, per, cmpStorm.send) })
		}
	}
	// -wrk: wrk as a third target in the same rounds, a cross-check of
	// the load generator (wrk costs the machine as much per request).
	var wrks []wrkResult
	var wrkErr error
	haveWrk := error(nil)
	if env.Wrk {
		_, haveWrk = exec.LookPath("wrk")
	}
	wrkRound := func(r int) {
		w, _, err := runWrk(ctx, env, pgMeter, pg.base, fmt.Sprintf("wrk%d-", r), per)
		if err != nil {
			wrkErr = err
			return
		}
		wrks = append(wrks, w)
	}
	var raw, capt, floors, storm, cmp, cmpStorm []postResult
	for r := range env.Rounds {
		order := []func(){
			func() { raw = append(raw, rawRound()) },
			func() { capt = append(capt, captRound()) },
			func() {
				floors = append(floors, metered(pgMeter, func() postResult { return closedLoop(ctx, env.Concurrency, per, floor.send) }))
			},
		}
		if env.Storm {
			order = append(order, func() { storm = append(storm, stormRound()) })
		}
		if cmpRound != nil {
			order = append(order, func() { cmp = append(cmp, cmpRound()) })
			if env.Storm {
				order = append(order, func() { cmpStorm = append(cmpStorm, cmpStormRound()) })
			}
		}
		if env.Wrk && haveWrk == nil && wrkErr == nil {
			order = append(order, func() { wrkRound(r) })
		}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, f := range order {
			f()
		}
	}
	rawR, captR, floorR := combinePost(raw), combinePost(capt), combinePost(floors)
	if env.Profile != "" {
		if err := profile(pg.inst, env.Profile, 5*time.Second, func() { closedLoop(ctx, env.Concurrency, 5*time.Second, capturePG) }); err != nil {
			return err
		}
		// The floor's profile, for go tool pprof -diff_base.
		if err := profile(pg.inst, env.Profile+".floor", 5*time.Second, func() { closedLoop(ctx, env.Concurrency, 5*time.Second, floor.send) }); err != nil {
			return err
		}
	}
	half := captR.rps() / 2
	if env.Rate > 0 {
		half = env.Rate
	}
	if env.Profile != "" {
		// At half the peak, where batches are small and every request
		// wakes the process: capture and the floor at the same rate.
		if err := profile(pg.inst, env.Profile+".open", 5*time.Second, func() { openLoopPost(ctx, env.Concurrency, half, 5*time.Second, capturePG) }); err != nil {
			return err
		}
		if err := profile(pg.inst, env.Profile+".floor.open", 5*time.Second, func() { openLoopPost(ctx, env.Concurrency, half, 5*time.Second, floor.send) }); err != nil {
			return err
		}
	}
	// The baseline at the same open-loop rate, in alternating rounds like
	// the closed loop: a stall of the machine or of PostgreSQL (this VM
	// has 50-200 ms ones now and then) lands in one round of one target,
	// and the per-round p99s below show which. Each target is warmed up
	// first: the first 0.4 s of the raw INSERT loop after the closed-loop
	// phase stalled in every run (p99 205-216 ms), a start-up effect.
	openLoopPost(ctx, env.Concurrency, half, env.Warmup, rawInsert)
	openLoopPost(ctx, env.Concurrency, half, env.Warmup, capturePG)
	// As long as the closed loop: a p99 over 12 s at ~5,000/s is 600
	// answers, so one 60 ms stall of the VM no longer decides it alone.
	openPer := env.Duration / time.Duration(env.Rounds)
	// The floor also at the capture's own rates, closed-loop and half:
	// a process's CPU per request depends on its rate (at 40,000/s its
	// threads never sleep; at 15,000/s each request pays more of the
	// runtime's and the kernel's wake-ups), so these say what capture
	// costs above the same POST answered at the same rate.
	peak := captR.rps()
	openLoopPost(ctx, env.Concurrency, peak, env.Warmup, floor.send)
	groups := batching.groups(env.Concurrency)
	period := time.Second
	if peak > 0 {
		period = time.Duration(float64(env.Concurrency) / peak * float64(time.Second))
	}
	pacedFloor := func(d time.Duration) postResult {
		return pacedLoop(ctx, env.Concurrency, groups, period, d, floor.send)
	}
	pacedFloor(env.Warmup)
	var openRaws, openPGs, openFloors, peakFloors, pacedFloors []postResult
	// Which autovacuum ran while each open-loop target was measured: a
	// vacuum of the rows the closed loop just wrote is one cause of a
	// round's p99 far above the others.
	vacuums := watchAutovacuum(ctx, db)
	var rawStarts, pgStarts []string
	for r := range env.Rounds {
		order := []func(){
			func() {
				rawStarts = append(rawStarts, vacuums.since())
				openRaws = append(openRaws, metered(rawMeter, func() postResult { return openLoopPost(ctx, env.Concurrency, half, openPer, rawInsert) }))
			},
			func() {
				pgStarts = append(pgStarts, vacuums.since())
				openPGs = append(openPGs, metered(pgMeter, func() postResult { return openLoopPost(ctx, env.Concurrency, half, openPer, capturePG) }))
			},
			func() {
				openFloors = append(openFloors, metered(pgMeter, func() postResult { return openLoopPost(ctx, env.Concurrency, half, openPer, floor.send) }))
			},
			func() {
				peakFloors = append(peakFloors, metered(pgMeter, func() postResult { return openLoopPost(ctx, env.Concurrency, peak, openPer, floor.send) }))
			},
			func() {
				pacedFloors = append(pacedFloors, metered(pgMeter, func() postResult { return pacedFloor(openPer) }))
			},
		}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, f := range order {
			f()
		}
	}
	vacuumed := vacuums.stop()
	openRaw, openPG, openFloor, peakFloor := combinePost(openRaws), combinePost(openPGs), combinePost(openFloors), combinePost(peakFloors)
	pacedR := combinePost(pacedFloors)
	stored := pendingRows(ctx, db)
	// Every deadlock PostgreSQL broke (deadlock_timeout, 1 s, then one
	// transaction fails) is in its log.
	serverLog, _ := os.ReadFile(cluster.LogPath())
	deadlocks := strings.Count(string(serverLog), "deadlock detected")
	var walMB float64
	_ = db.QueryRowContext(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn) / 1048576`, walStart).Scan(&walMB)

	// The SQLite default, same load, on a machine without the PostgreSQL
	// run's leftovers: its server (autovacuum of the rows just written)
	// stopped and their dirty pages written back, which otherwise delay
	// SQLite's fsyncs. A SQLite deployment has no PostgreSQL beside it.
	pool.Close()
	_ = db.Close()
	pg.inst.Stop()
	cluster.Destroy()
	syscall.Sync()
	lite, err := startCaptureInstance(env, "", "sqlite "+filepath.Join(pg.dir, "silo.db"))
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
	liteTarget := newCaptureTarget(lite.base, "lite-", env.Concurrency*4)
	defer liteTarget.client.Close()
	captureLite := liteTarget.send
	closedLoop(ctx, env.Concurrency, env.Warmup, captureLite)
	liteMeter := cpuMeter{caddy: lite.inst.Pid()}
	liteR := metered(liteMeter, func() postResult { return closedLoop(ctx, env.Concurrency, env.Duration/2, captureLite) })
	openLoopPost(ctx, env.Concurrency, liteR.rps()/2, env.Warmup, captureLite)
	openLite := metered(liteMeter, func() postResult {
		return openLoopPost(ctx, env.Concurrency, liteR.rps()/2, env.Duration/2, captureLite)
	})

	fmt.Fprintf(env.Out, "machine: %s, load average %s; PostgreSQL fsync=%s synchronous_commit=%s full_page_writes=%s max_wal_size=%s shared_buffers=%s; %d integrations; concurrency %d; closed loop %s in %d alternating rounds, PostgreSQL open loop %s in as many, SQLite runs %s\n",
		env.Machine(), loadAverage(), fsync, syncCommit, fpw, walSize, sharedBuffers, captureIntegrations, env.Concurrency, env.Duration, env.Rounds, env.Duration, env.Duration/2)
	tw := tabwriter.NewWriter(env.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "what\trows/s\tp50 ms\tp99 ms\terrors\t|\tCPU µs/row: caddy\tpostgres\tload generator\t\n")
	row := func(what string, r postResult) {
		c, p, l := r.cpu.perRow(r.sent)
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%d\t|\t%s\t%s\t%s\t\n", what, r.rps(), ms(quantile(r.latencies, .5)), ms(quantile(r.latencies, .99)), r.errors, c, p, l)
	}
	row("baseline: raw pgx single-row INSERT", rawR)
	row("capture, PostgreSQL, closed loop", captR)
	stormR := combinePost(storm)
	if env.Storm {
		row("capture, PostgreSQL, closed loop, 50% repeated delivery ids", stormR)
	}
	if len(cmp) > 0 {
		row("capture, PostgreSQL, closed loop, "+filepath.Base(env.CompareBinary), combinePost(cmp))
		if env.Storm {
			row("capture, PostgreSQL, closed loop, 50% repeated delivery ids, "+filepath.Base(env.CompareBinary), combinePost(cmpStorm))
		}
	}
	var wrkRPS float64
	if len(wrks) > 0 {
		var requests, errors int
		var cpu, caddy, pgCPU time.Duration
		var p50s, p99s []string
		for _, w := range wrks {
			requests += w.requests
			errors += w.errors
			cpu, caddy, pgCPU = cpu+w.cpu, caddy+w.caddy, pgCPU+w.pg
			wrkRPS += w.rps / float64(len(wrks))
			p50s, p99s = append(p50s, ms(w.p50)), append(p99s, ms(w.p99))
		}
		perRow := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d.Microseconds())/float64(requests)) }
		fmt.Fprintf(tw, "capture, PostgreSQL, closed loop, wrk -t2 -c%d\t%.0f\t%s\t%s\t%d\t|\t%s\t%s\t%s\t\n", env.Concurrency, wrkRPS,
			strings.Join(p50s, "/"), strings.Join(p99s, "/"), errors, perRow(caddy), perRow(pgCPU), perRow(cpu))
	}
	row("floor: same POST, Caddy answers 200 without capture", floorR)
	row(fmt.Sprintf("baseline: raw INSERT, open loop at %.0f/s", half), openRaw)
	row(fmt.Sprintf("capture, PostgreSQL, open loop at %.0f/s", half), openPG)
	row(fmt.Sprintf("floor, open loop at %.0f/s (the capture's closed-loop rate)", peak), peakFloor)
	row(fmt.Sprintf("floor, open loop at %.0f/s", half), openFloor)
	row(fmt.Sprintf("floor in the capture's rhythm: %d bursts of %d every %.2f ms", groups, env.Concurrency/groups, float64(period)/float64(time.Millisecond)/float64(groups)), pacedR)
	row("capture, SQLite, closed loop", liteR)
	row(fmt.Sprintf("capture, SQLite, open loop at %.0f/s", liteR.rps()/2), openLite)
	_ = tw.Flush()
	roundP99 := func(rs []postResult) string {
		var parts []string
		for _, r := range rs {
			parts = append(parts, ms(quantile(r.latencies, .99)))
		}
		return strings.Join(parts, " ")
	}
	// Caddy's CPU per stored row against the floor's per request.
	caddyPer := func(r postResult) float64 { return r.cpu.caddyPerRow(r.sent) }
	if wrkErr != nil {
		fmt.Fprintf(env.Out, "wrk failed: %v\n", wrkErr)
	} else if env.Wrk && haveWrk != nil {
		fmt.Fprintln(env.Out, "wrk is not installed (apt-get install wrk): no wrk row")
	}
	fmt.Fprintf(env.Out, "open-loop p99 per round (ms): raw INSERT %s; capture %s\n", roundP99(openRaws), roundP99(openPGs))
	fmt.Fprintf(env.Out, "open-loop rounds began at (s): raw INSERT %s; capture %s; autovacuum seen: %s\n",
		strings.Join(rawStarts, " "), strings.Join(pgStarts, " "), vacuumed)
	var floorRatios []string
	for i := range capt {
		floorRatios = append(floorRatios, fmt.Sprintf("%.2f", caddyPer(capt[i])/caddyPer(floors[i])))
	}
	fmt.Fprintf(env.Out, "Caddy CPU capture/floor per round: %s\n", strings.Join(floorRatios, " "))
	cmpNote := ""
	if len(cmp) > 0 {
		c := combinePost(cmp)
		cmpNote = fmt.Sprintf("; %s %.1f µs = %.2fx", filepath.Base(env.CompareBinary), caddyPer(c), caddyPer(c)/caddyPer(floorR))
	}
	fmt.Fprintf(env.Out, "Caddy CPU per stored row: capture %.1f µs = %.2fx the floor's %.1f µs in the same rounds (target <= 1.50x)%s; at the same rates: %.2fx the floor at %.0f/s (%.1f µs), open loop %.1f µs = %.2fx the floor at %.0f/s (%.1f µs)\n",
		caddyPer(captR), caddyPer(captR)/caddyPer(floorR), caddyPer(floorR), cmpNote,
		caddyPer(captR)/caddyPer(peakFloor), peak, caddyPer(peakFloor),
		caddyPer(openPG), caddyPer(openPG)/caddyPer(openFloor), half, caddyPer(openFloor))
	fmt.Fprintf(env.Out, "capture's batching in the closed loop: %.1f rows per commit (%d rows, %d transactions); Caddy CPU capture/floor in its rhythm: %.2fx (%.1f µs at %.0f/s)\n",
		batching.batch(), batching.rows, batching.commits, caddyPer(captR)/caddyPer(pacedR), caddyPer(pacedR), pacedR.rps())
	fmt.Fprintf(env.Out, "capture/raw INSERT: %.2fx (target >= 0.60x); PostgreSQL %.0f/s (target >= 10000); SQLite %.0f/s (target >= 5000); p99 at half peak %s ms (target <= 25)\n",
		captR.rps()/rawR.rps(), captR.rps(), liteR.rps(), ms(quantile(openPG.latencies, .99)))
	var stormRatios []string
	for i := range storm {
		stormRatios = append(stormRatios, fmt.Sprintf("%.2f", storm[i].rps()/capt[i].rps()))
	}
	if env.Storm {
		fmt.Fprintf(env.Out, "duplicate storm/unique ids: %.2fx (target >= 0.80x; per round %s); storm p99 %s ms (target <= 25), unique-id p99 %s ms; \"deadlock detected\" in the PostgreSQL log: %d (target 0)\n",
			stormR.rps()/captR.rps(), strings.Join(stormRatios, " "), ms(quantile(stormR.latencies, .99)), ms(quantile(captR.latencies, .99)), deadlocks)
	}
	fmt.Fprintf(env.Out, "rows in PostgreSQL after the run: %d (raw INSERTs + acknowledged captures); WAL written %.0f MB into %d MB of segments made before the run\n",
		stored, walMB, prewarmSegments*16)
	return nil
}

func combinePost(rs []postResult) postResult {
	var out postResult
	for _, r := range rs {
		out.sent += r.sent
		out.errors += r.errors
		out.elapsed += r.elapsed
		out.latencies = append(out.latencies, r.latencies...)
		out.cpu = out.cpu.add(r.cpu)
	}
	slices.Sort(out.latencies)
	return out
}

// metered runs one measurement and records the CPU time each process of
// the run spent in it.
func metered(m cpuMeter, run func() postResult) postResult {
	before := m.sample()
	r := run()
	r.cpu = m.sample().sub(before)
	return r
}

func poolSuffix(dsn string, conns int) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return fmt.Sprintf("%spool_max_conns=%d", sep, conns)
}

type captureInstance struct {
	inst *harness.Caddy
	base string
	dir  string
}

// startCaptureInstance runs capture with the drainer off, so the figures
// are the capture path alone.
func startCaptureInstance(env *Env, bin, storage string) (*captureInstance, error) {
	ports, err := env.Ports(2)
	if err != nil {
		return nil, err
	}
	dir, err := env.TempDir()
	if err != nil {
		return nil, err
	}
	admin, site := ports[0], ports[1]
	caddyfile := fmt.Sprintf(`{
%s	sentry_silo {
		storage %s
		region us http://127.0.0.1:9
		drainer {
			off
		}
	}
}
http://%s {
	route {
		sentry_webhook_capture
		respond "control" 200
	}
}
`, harness.GlobalOptions(admin), storage, site.Addr)
	start := env.Start
	if bin != "" {
		start = func(admin *harness.Port, caddyfile string) (*harness.Caddy, error) {
			return env.StartBinary(bin, admin, caddyfile)
		}
	}
	inst, err := start(admin, caddyfile)
	if err != nil {
		return nil, err
	}
	return &captureInstance{inst: inst, base: site.URL(), dir: dir}, nil
}

// seedGitHubSQLite is seedGitHub for the SQLite instance.
func seedGitHubSQLite(ctx context.Context, db *sql.DB, n int) error {
	var err error
	if harness.Poll(60*time.Second, func() bool {
		var k int
		err = db.QueryRowContext(ctx, `SELECT count(*) FROM sentry_organizationintegration`).Scan(&k)
		if err == nil {
			err = db.QueryRowContext(ctx, `SELECT count(*) FROM silo_webhook_payload`).Scan(&k)
		}
		return err == nil || ctx.Err() != nil
	}) != nil || err != nil {
		return fmt.Errorf("tables never appeared: %v", err)
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

// autovacuumWatch samples PostgreSQL's autovacuum workers every 100 ms.
type autovacuumWatch struct {
	start time.Time
	done  chan struct{}
	out   chan string
}

// since is the time since the watch began, for the rounds' start times.
func (w *autovacuumWatch) since() string { return fmt.Sprintf("%.1f", time.Since(w.start).Seconds()) }

func watchAutovacuum(ctx context.Context, db *sql.DB) *autovacuumWatch {
	start := time.Now()
	w := &autovacuumWatch{start: start, done: make(chan struct{}), out: make(chan string, 1)}
	go func() {
		type span struct{ first, last time.Duration }
		seen := map[string]*span{}
		var order []string
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				var parts []string
				for _, q := range order {
					sp := seen[q]
					parts = append(parts, fmt.Sprintf("%s %.1f-%.1f s", q, sp.first.Seconds(), sp.last.Seconds()))
				}
				if len(parts) == 0 {
					parts = []string{"none seen"}
				}
				w.out <- strings.Join(parts, "; ") + fmt.Sprintf(" (of %.1f s, sampled every 100 ms)", time.Since(start).Seconds())
				return
			case <-tick.C:
			}
			rows, err := db.QueryContext(ctx, `SELECT query FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND query <> ''`)
			if err != nil {
				continue
			}
			now := time.Since(start)
			for rows.Next() {
				var q string
				if rows.Scan(&q) != nil {
					continue
				}
				q = strings.TrimPrefix(q, "autovacuum: ")
				if sp, ok := seen[q]; ok {
					sp.last = now
				} else {
					seen[q] = &span{now, now}
					order = append(order, q)
				}
			}
			rows.Close()
		}
	}()
	return w
}

// stop ends the sampling and says what was seen, with when (seconds from
// the first open-loop round).
func (w *autovacuumWatch) stop() string {
	close(w.done)
	return <-w.out
}
