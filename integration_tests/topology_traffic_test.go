package integration_tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// The webhook traffic of the topology tests: GitHub pushes with unique
// delivery ids and random bodies of many sizes, some of whose senders give
// up, and the check of what the regions received against what was sent.

// How a sender behaves.
const (
	topoNormal   = "normal"    // waits for the answer (one retry on a connection error)
	topoCutBody  = "cut-body"  // closes the connection halfway through the body
	topoNoAnswer = "no-answer" // sends everything, closes before the answer
	topoCancel   = "cancel"    // its context ends a few milliseconds in
)

// topoDeliveryField finds the delivery id a body names near its start.
var topoDeliveryField = regexp.MustCompile(`"delivery":"([0-9a-f-]+)"`)

// errGaveUp marks a sender that went away before an answer.
var errGaveUp = errors.New("gave up")

// Body sizes (bytes, before JSON framing). Background traffic has
// GitHub's range, up to pushes of 140 KB; the slow-database bursts keep
// most bodies small so a burst of hundreds fits in one commit batch.
var (
	topoBackgroundSizes = []int{300, 1200, 4000, 16000, 40000, 66000, 140000}
	topoBurstSizes      = []int{300, 900, 2500, 6000, 12000, 70000}
)

// topoHook is one webhook and what became of it at its sender. The
// results are written by the sending goroutine and read after it ended.
type topoHook struct {
	id           string // X-GitHub-Delivery
	installation string
	repo         int
	body         []byte
	sum          [32]byte
	kind         string
	phase        string
	instance     int

	status     int // 0 when no answer was read
	err        error
	tries      int
	start, end time.Time
}

func (h *topoHook) header() http.Header {
	return http.Header{
		"Content-Type":        {"application/json"},
		"User-Agent":          {"GitHub-Hookshot/6b1e1ab"},
		"X-Github-Event":      {"push"},
		"X-Github-Delivery":   {h.id},
		"X-Github-Hook-Id":    {"424242"},
		"X-Hub-Signature-256": {topoSignature(h.body)},
	}
}

// raw is the whole HTTP/1.1 request, and where its body starts.
func (h *topoHook) raw(host string) ([]byte, int) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", topoHookPath, host, len(h.body))
	for k, vs := range h.header() {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	start := b.Len()
	b.Write(h.body)
	return b.Bytes(), start
}

func (h *topoHook) String() string {
	return fmt.Sprintf("%s (%s, %s, instance %d, installation %s, %d bytes, answer %d)", h.id, h.kind, h.phase, h.instance, h.installation, len(h.body), h.status)
}

// topoTraffic makes and sends webhooks and keeps every one.
type topoTraffic struct {
	top   *topology
	mu    sync.Mutex
	rng   *rand.Rand
	hooks []*topoHook
	// outstanding counts webhooks being sent to each instance now.
	outstanding [2]atomic.Int64
	sent        atomic.Int64 // background webhooks finished
	began       time.Time
	// oneRepository sends every webhook for repository 100: GitHub's
	// mailboxes are split by repository, so only then do they share one.
	oneRepository bool
}

func newTopoTraffic(top *topology, seed uint64) *topoTraffic {
	return &topoTraffic{top: top, began: time.Now(), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

type topoPush struct {
	Ref          string `json:"ref"`
	After        string `json:"after"`
	Delivery     string `json:"delivery"`
	Installation struct {
		ID int64 `json:"id"`
	} `json:"installation"`
	Repository struct {
		ID       int    `json:"id"`
		FullName string `json:"full_name"`
	} `json:"repository"`
	HeadCommit struct {
		Message string `json:"message"`
	} `json:"head_commit"`
	Sender struct {
		Login string `json:"login"`
	} `json:"sender"`
}

// newHook makes a webhook: one in five for the acme-only installation,
// five repositories, a random body of one of sizes.
func (tr *topoTraffic) newHook(kind, phase string, instance int, sizes []int) *topoHook {
	return tr.newHookFor("", kind, phase, instance, sizes)
}

// newHookFor is newHook for one installation ("" picks one).
func (tr *topoTraffic) newHookFor(installation, kind, phase string, instance int, sizes []int) *topoHook {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := len(tr.hooks) + 1
	h := &topoHook{kind: kind, phase: phase, instance: instance, installation: installation, repo: 100 + tr.rng.IntN(5)}
	if tr.oneRepository {
		h.repo = 100
	}
	if pick := tr.rng.IntN(5); h.installation == "" {
		h.installation = topoInstallBoth
		if pick == 0 {
			h.installation = topoInstallUS
		}
	}
	// A UUID whose first group is the sequence number: unique.
	h.id = fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", n, tr.rng.IntN(1<<16), tr.rng.IntN(1<<12), tr.rng.IntN(1<<12), tr.rng.Uint64()&(1<<48-1))
	pad := make([]byte, sizes[tr.rng.IntN(len(sizes))]*3/4+8)
	for i := 0; i+8 <= len(pad); i += 8 {
		binary.LittleEndian.PutUint64(pad[i:], tr.rng.Uint64())
	}
	var p topoPush
	p.Ref, p.After, p.Delivery = "refs/heads/main", fmt.Sprintf("%040x", tr.rng.Uint64()), h.id
	p.Installation.ID, _ = strconv.ParseInt(h.installation, 10, 64)
	p.Repository.ID, p.Repository.FullName = h.repo, fmt.Sprintf("acme/repo-%d", h.repo)
	// Random bytes as base64-ish text: a JSON string of the wanted size.
	p.HeadCommit.Message = fmt.Sprintf("%x", pad)[:len(pad)*4/3]
	p.Sender.Login = "octo"
	body, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	h.body, h.sum = body, sha256.Sum256(body)
	tr.hooks = append(tr.hooks, h)
	return h
}

// send sends h as its kind says; a no-answer sender gives up when giveUp
// closes, or after 15ms when giveUp is nil. The 15ms and the cancel's 8ms
// are the senders' own timeouts (the behaviour under test), not waits for
// the server: outside the slow windows most of those senders get their
// answer first, inside them none does.
func (tr *topoTraffic) send(h *topoHook, giveUp <-chan struct{}) {
	tr.outstanding[h.instance].Add(1)
	defer tr.outstanding[h.instance].Add(-1)
	h.start = time.Now()
	defer func() { h.end = time.Now() }()
	base := tr.top.bases[h.instance]
	switch h.kind {
	case topoNormal:
		for h.tries = 1; h.tries <= 2; h.tries++ {
			// One retry on a connection error (a reset during a reload),
			// with the same delivery id and bytes, as GitHub redelivers.
			req, _ := http.NewRequest(http.MethodPost, base+topoHookPath, bytes.NewReader(h.body))
			req.Header = h.header()
			resp, err := tr.top.client.Do(req)
			if err != nil {
				h.err = err
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			h.status, h.err = resp.StatusCode, nil
			return
		}
	case topoCancel:
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		timer := time.AfterFunc(8*time.Millisecond, cancel)
		defer timer.Stop()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+topoHookPath, bytes.NewReader(h.body))
		req.Header = h.header()
		resp, err := tr.top.client.Do(req)
		if err != nil {
			h.err = err
			return
		}
		h.status = resp.StatusCode
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	case topoCutBody, topoNoAnswer:
		host := strings.TrimPrefix(base, "http://")
		conn, err := net.DialTimeout("tcp", host, 10*time.Second)
		if err != nil {
			h.err = err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
		raw, bodyStart := h.raw(host)
		if h.kind == topoCutBody {
			_, _ = conn.Write(raw[:bodyStart+len(h.body)/2])
			h.err = errGaveUp
			return
		}
		if _, err := conn.Write(raw); err != nil {
			h.err = err
			return
		}
		answered := make(chan error, 1)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil {
					h.status = resp.StatusCode
				}
			}
			answered <- err
		}()
		var timer <-chan time.Time
		if giveUp == nil {
			timer = time.After(15 * time.Millisecond)
		}
		select {
		case h.err = <-answered:
			return
		case <-giveUp:
		case <-timer:
		}
		conn.Close()
		// The reader ends at once on the closed connection, unless the
		// whole answer was in already.
		if err := <-answered; err != nil {
			h.status, h.err = 0, errGaveUp
		}
	}
}

// background sends webhooks one after another, alternating instances,
// until stop closes or max were sent. One in ten gives up, in turn in
// each of the three ways.
func (tr *topoTraffic) background(stop <-chan struct{}, worker, max int) {
	giveUps := []string{topoCutBody, topoNoAnswer, topoCancel}
	for i := 0; i < max; i++ {
		select {
		case <-stop:
			return
		default:
		}
		kind := topoNormal
		if (i+worker)%10 == 9 {
			kind = giveUps[((i+worker)/10)%len(giveUps)]
		}
		h := tr.newHook(kind, "background", (i+worker)%2, topoBackgroundSizes)
		tr.send(h, nil)
		tr.sent.Add(1)
	}
}

// topoWindow is one stretch of slow database: the payload table locked
// while a backlog of webhooks queues, give-ups queued behind it, then the
// lock released and the give-ups gone while the backlog is being written,
// and new webhooks right behind them.
type topoWindow struct {
	name                    string
	backlog, giveUps, after int // webhooks per instance

	held     time.Duration // how long inserts were blocked
	waiting  int           // inserts seen waiting on the lock
	copySeen int           // instances whose COPY batch was seen in progress when their give-ups left
	hooks    []*topoHook   // the window's give-ups
	problems []string      // the scenario did not happen as planned
}

const (
	topoWaitingInsertsSQL = `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2
		AND wait_event_type = 'Lock' AND query ILIKE '%silo_webhook_payload%'`
	topoCopyInProgressSQL = `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2
		AND state <> 'idle' AND query ILIKE '%silo_payload_stage_v%'`
)

// count runs one of the queries above for instance i's sessions.
func (tr *topoTraffic) count(ctx context.Context, q string, i int) int {
	var n int
	if err := tr.top.storage.QueryRowContext(ctx, q, tr.top.storageName, topoApplicationName(i)).Scan(&n); err != nil {
		return -1
	}
	return n
}

// requestsReachedHandlers reports whether each instance has at least as
// many requests in flight as the test is sending it.
func (tr *topoTraffic) requestsReachedHandlers() bool {
	for i, c := range tr.top.instances {
		m, err := topoMetrics(c)
		if err != nil || int64(topoSum(m, "caddy_http_requests_in_flight")) < tr.outstanding[i].Load() {
			return false
		}
	}
	return true
}

func (tr *topoTraffic) slowWindow(t *testing.T, w *topoWindow) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := tr.top.storage.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			_ = tx.Rollback()
		}
	}
	defer release()
	// SHARE blocks every INSERT, UPDATE and DELETE of payload rows
	// (capture commits and the drainer's outcomes), and no read.
	if _, err := tx.ExecContext(ctx, `LOCK TABLE silo_webhook_payload IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	locked := time.Now()
	var wg sync.WaitGroup
	launch := func(kind string, n, i int, giveUp <-chan struct{}) []*topoHook {
		var hs []*topoHook
		for k := 0; k < n; k++ {
			h := tr.newHook(kind, w.name, i, topoBurstSizes)
			hs = append(hs, h)
			wg.Go(func() { tr.send(h, giveUp) })
		}
		return hs
	}
	instances := len(tr.top.instances)
	for i := 0; i < instances; i++ {
		launch(topoNormal, w.backlog, i, nil)
	}
	if harness.Poll(20*time.Second, tr.requestsReachedHandlers) != nil {
		w.problems = append(w.problems, "the backlog never was in the handlers all at once")
	}
	giveUp := make([]chan struct{}, instances)
	for i := range giveUp {
		giveUp[i] = make(chan struct{})
		w.hooks = append(w.hooks, launch(topoNoAnswer, w.giveUps, i, giveUp[i])...)
	}
	if harness.Poll(20*time.Second, tr.requestsReachedHandlers) != nil {
		w.problems = append(w.problems, "the give-ups never were in the handlers with the backlog")
	}
	for i := 0; i < instances; i++ {
		n := 0
		if harness.Poll(20*time.Second, func() bool { n = tr.count(ctx, topoWaitingInsertsSQL, i); return n > 0 }) != nil {
			w.problems = append(w.problems, fmt.Sprintf("no insert of instance %d ever waited on the lock", i))
		}
		w.waiting += max(n, 0)
	}
	release()
	w.held = time.Since(locked)
	// The flushers now commit the backlog; a batch of 256 rows or more
	// goes through COPY, which reads the bodies as it streams them. The
	// give-ups of each instance leave once its COPY is seen, and new
	// webhooks follow at once.
	left := make([]bool, instances)
	for deadline := time.Now().Add(3 * time.Second); w.copySeen < instances && time.Now().Before(deadline); {
		for i := range left {
			if !left[i] && tr.count(ctx, topoCopyInProgressSQL, i) > 0 {
				left[i] = true
				w.copySeen++
				close(giveUp[i])
				launch(topoNormal, w.after, i, nil)
			}
		}
	}
	for i := range left {
		if !left[i] {
			close(giveUp[i])
			launch(topoNormal, w.after, i, nil)
		}
	}
	wg.Wait()
}

func (w *topoWindow) String() string {
	gaveUp, answered := 0, map[int]int{}
	for _, h := range w.hooks {
		if errors.Is(h.err, errGaveUp) {
			gaveUp++
		} else {
			answered[h.status]++
		}
	}
	s := fmt.Sprintf("%s: %d+%d+%d webhooks per instance, inserts blocked %s (%d seen waiting), COPY seen in progress on %d instances when their give-ups left, %d gave up, answered first: %v",
		w.name, w.backlog, w.giveUps, w.after, w.held.Round(time.Millisecond), w.waiting, w.copySeen, gaveUp, answered)
	if len(w.problems) > 0 {
		s += "; scenario problems: " + strings.Join(w.problems, "; ")
	}
	return s
}

// all returns every webhook made so far.
func (tr *topoTraffic) all() []*topoHook {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]*topoHook(nil), tr.hooks...)
}

// summary counts the senders' outcomes by kind: "normal 202:812 503:3 ...".
func topoSummary(hooks []*topoHook) string {
	counts := map[string]map[string]int{}
	errs := map[string]string{}
	for _, h := range hooks {
		if h.err != nil && !errors.Is(h.err, errGaveUp) && errs[h.kind] == "" {
			errs[h.kind] = h.err.Error()
		}
		if counts[h.kind] == nil {
			counts[h.kind] = map[string]int{}
		}
		k := strconv.Itoa(h.status)
		switch {
		case errors.Is(h.err, errGaveUp):
			k = "gave-up"
		case h.status == 0:
			k = "error"
		}
		counts[h.kind][k]++
	}
	var parts []string
	for _, kind := range []string{topoNormal, topoCutBody, topoNoAnswer, topoCancel} {
		if counts[kind] == nil {
			continue
		}
		keys := make([]string, 0, len(counts[kind]))
		for k := range counts[kind] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		fmt.Fprintf(&b, "%s", kind)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s:%d", k, counts[kind][k])
		}
		if e := errs[kind]; e != "" {
			fmt.Fprintf(&b, " (e.g. %s)", e)
		}
		parts = append(parts, b.String())
	}
	return strings.Join(parts, "; ")
}

// allDelivered reports whether every accepted webhook reached each of its
// regions.
func (tr *topoTraffic) allDelivered() (missing int) {
	got := map[string]map[string]int{"us": {}, "de": {}}
	for _, d := range tr.top.us.received() {
		got["us"][d.deliveryID]++
	}
	for _, d := range tr.top.de.received() {
		got["de"][d.deliveryID]++
	}
	for _, h := range tr.all() {
		if h.status != http.StatusAccepted {
			continue
		}
		for _, r := range topoRegionsOf[h.installation] {
			if got[r][h.id] == 0 {
				missing++
			}
		}
	}
	return missing
}

// verify compares what the regions received with what was sent, and
// reports every difference. Order is checked per mailbox (region,
// installation and repository: GitHub's mailboxes are always split by
// repository and event type, and every webhook here is a push) between
// webhooks whose 202 came back before the other was sent: those are
// committed in that order, and FIFO must deliver them in it.
func (tr *topoTraffic) verify(t *testing.T) {
	t.Helper()
	hooks := tr.all()
	byID := make(map[string]*topoHook, len(hooks))
	bySum := make(map[[32]byte]*topoHook, len(hooks))
	for _, h := range hooks {
		byID[h.id] = h
		bySum[h.sum] = h
	}
	received := map[string][]topoDelivery{"us": tr.top.us.received(), "de": tr.top.de.received()}
	got := map[string]map[string][]topoDelivery{}
	var unknown, wrongRegion []string
	for region, ds := range received {
		got[region] = map[string][]topoDelivery{}
		for _, d := range ds {
			h := byID[d.deliveryID]
			if h == nil {
				unknown = append(unknown, fmt.Sprintf("%s got %d bytes as delivery %q", region, d.size, d.deliveryID))
				continue
			}
			if !slices.Contains(topoRegionsOf[h.installation], region) {
				wrongRegion = append(wrongRegion, fmt.Sprintf("%s at %s", h, region))
			}
			got[region][d.deliveryID] = append(got[region][d.deliveryID], d)
		}
	}
	var missing, duplicated, wrongBytes, cutDelivered, partial []string
	accepted := 0
	for _, h := range hooks {
		regions := topoRegionsOf[h.installation]
		if h.status == http.StatusAccepted {
			accepted++
		}
		reached := 0
		for _, r := range regions {
			ds := got[r][h.id]
			for _, d := range ds {
				if d.sum == h.sum {
					continue
				}
				whose := "no webhook any sender sent"
				if o := bySum[d.sum]; o != nil {
					whose = "the body of " + o.String()
				} else if m := topoDeliveryField.FindSubmatch(d.head); m != nil && byID[string(m[1])] != nil {
					// Bodies name their delivery near the start.
					whose = "bytes that start as the body of " + byID[string(m[1])].String()
				}
				wrongBytes = append(wrongBytes, fmt.Sprintf("%s at %s: %d bytes (signature ok: %v), carrying %s", h, r, d.size, d.signed, whose))
			}
			switch {
			case h.status == http.StatusAccepted && len(ds) == 0:
				missing = append(missing, fmt.Sprintf("%s at %s", h, r))
			case len(ds) > 1:
				duplicated = append(duplicated, fmt.Sprintf("%s at %s: %d times", h, r, len(ds)))
			}
			if len(ds) > 0 {
				reached++
			}
		}
		if h.kind == topoCutBody && reached > 0 {
			cutDelivered = append(cutDelivered, h.String())
		}
		if reached > 0 && reached < len(regions) && h.status != http.StatusAccepted {
			partial = append(partial, fmt.Sprintf("%s reached %d of its %d regions", h, reached, len(regions)))
		}
	}
	var disorder []string
	for region, ds := range received {
		pos := map[string]int{}
		at := map[string]time.Time{}
		for _, d := range ds {
			if _, ok := pos[d.deliveryID]; !ok {
				pos[d.deliveryID], at[d.deliveryID] = d.seq, d.at
			}
		}
		for installation, regions := range topoRegionsOf {
			if !slices.Contains(regions, region) {
				continue
			}
			var box []*topoHook
			for _, h := range hooks {
				if _, ok := pos[h.id]; ok && h.status == http.StatusAccepted && h.installation == installation {
					box = append(box, h)
				}
			}
			for _, x := range box {
				var overtaken []*topoHook
				for _, y := range box {
					if x.repo == y.repo && x.end.Before(y.start) && pos[x.id] > pos[y.id] {
						overtaken = append(overtaken, y)
					}
				}
				if len(overtaken) > 0 {
					y := overtaken[0]
					disorder = append(disorder, fmt.Sprintf("github:%s:%s:%d:push: %s, accepted at %s, delivered at %s, after %d webhooks sent later, e.g. %s sent at %s, delivered at %s",
						region, installation, x.repo%100, x, x.end.Sub(tr.began).Round(time.Millisecond), at[x.id].Sub(tr.began).Round(time.Millisecond),
						len(overtaken), y.id, y.start.Sub(tr.began).Round(time.Millisecond), at[y.id].Sub(tr.began).Round(time.Millisecond)))
				}
			}
		}
	}
	t.Logf("senders: %s", topoSummary(hooks))
	t.Logf("regions received: us %d, de %d deliveries; %d webhooks accepted", len(received["us"]), len(received["de"]), accepted)
	report := func(what string, items []string) {
		if len(items) == 0 {
			return
		}
		sort.Strings(items)
		t.Errorf("%s: %d, e.g.:\n  %s", what, len(items), strings.Join(items[:min(len(items), 8)], "\n  "))
	}
	report("accepted webhooks not delivered to one of their regions", missing)
	report("webhooks delivered more than once to a region", duplicated)
	report("deliveries whose body is not the bytes their sender sent", wrongBytes)
	report("webhooks cut off mid-body that were delivered", cutDelivered)
	report("webhooks not accepted that reached only some of their regions", partial)
	report("deliveries of unknown webhooks", unknown)
	report("deliveries to a region the installation is not in", wrongRegion)
	report("webhooks overtaken in their mailbox by later ones", disorder)
}
