package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/drain"
	"github.com/sentrysilo/caddy-silo/modules/internal/rate"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
	"github.com/sentrysilo/caddy-silo/modules/internal/store/storetest"
)

// engine is what the tests need of a storage engine: every part of the
// admin API, and the capture's and drainer's writes that set rows up.
type engine interface {
	MailboxStore
	DeadLetterStore
	DeliveredStore
	PauseStore
	Health
	InsertPayloads(ctx context.Context, payloads []store.NewPayload) ([]store.InsertResult, error)
	DeadLetterPayload(ctx context.Context, id int64, reason string, lastStatus int, lastError string, now time.Time) error
	ReschedulePayload(ctx context.Context, id int64, attempts int, scheduleFor time.Time, lastStatus int, lastError string) error
	DeliverPayload(ctx context.Context, id int64, d store.Delivery) error
	RecordRegionAnswer(ctx context.Context, id int64, mailbox string, answer []byte, lastStatus int, now time.Time) error
	MigrateDirectory(ctx context.Context) error
	MissingDirectoryTables(ctx context.Context) ([]string, error)
}

func openSQLite(t *testing.T) engine { return storetest.SQLite(t) }

func openPostgres(t *testing.T) engine { return storetest.Postgres(t) }

var engines = []struct {
	name string
	open func(t *testing.T) engine
}{
	{"SQLite", openSQLite},
	{"Postgres", openPostgres},
}

// forEachEngine runs fn on a fresh database of each engine.
func forEachEngine(t *testing.T, fn func(t *testing.T, st engine)) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) { fn(t, e.open(t)) })
	}
}

// wakes records the API's wakes.
type wakes struct {
	mu  sync.Mutex
	got []string
}

func (w *wakes) wake(names ...string) {
	w.mu.Lock()
	w.got = append(w.got, strings.Join(names, ","))
	w.mu.Unlock()
}

func (w *wakes) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.got...)
}

func newAPI(st engine, w *wakes) API {
	return API{
		Stores:      Stores{Mailboxes: st, DeadLetters: st, Delivered: st, Pauses: st, Health: st},
		Wake:        w.wake,
		Regions:     func() []string { return []string{"de", "us"} },
		BreakerOpen: func(region string) bool { return region == "de" },
	}
}

// answer is one response: its status, headers, raw body and JSON.
type answer struct {
	status int
	header http.Header
	raw    string
	json   map[string]any
}

// do sends one request to api; an *HTTPError comes back as Caddy renders
// it, {"error": message}.
func do(t *testing.T, api API, method, path string, body ...string) answer {
	t.Helper()
	var rd io.Reader = http.NoBody
	if len(body) > 0 {
		rd = strings.NewReader(body[0])
	}
	req, _ := http.NewRequest(method, "http://localhost:2019"+path, rd)
	req.RemoteAddr = "127.0.0.1:50000"
	rec := newRecorder()
	if err := api.ServeHTTP(rec, req); err != nil {
		var he *HTTPError
		if !errors.As(err, &he) {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		if he.Message == "" {
			t.Fatalf("%s %s: an error without a message", method, path)
		}
		b, _ := json.Marshal(map[string]string{"error": he.Message})
		return answer{status: he.Status, header: rec.header, raw: string(b), json: map[string]any{"error": he.Message}}
	}
	a := answer{status: rec.status, header: rec.header, raw: rec.body.String()}
	if rec.status != http.StatusNoContent {
		if err := json.Unmarshal(rec.body.Bytes(), &a.json); err != nil {
			t.Fatalf("%s %s: body %q: %v", method, path, rec.body.String(), err)
		}
	}
	return a
}

// ok is do that requires a 200.
func ok(t *testing.T, api API, method, path string, body ...string) map[string]any {
	t.Helper()
	a := do(t, api, method, path, body...)
	if a.status != http.StatusOK {
		t.Fatalf("%s %s = %d %s", method, path, a.status, a.raw)
	}
	return a.json
}

func list(m map[string]any, key string) []map[string]any {
	items, _ := m[key].([]any)
	out := make([]map[string]any, 0, len(items))
	for _, it := range items {
		out = append(out, it.(map[string]any))
	}
	return out
}

func ids(items []map[string]any) []int64 {
	out := []int64{}
	for _, it := range items {
		out = append(out, int64(it["id"].(float64)))
	}
	return out
}

func insert(t *testing.T, st engine, ps ...store.NewPayload) []int64 {
	t.Helper()
	res, err := st.InsertPayloads(context.Background(), ps)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, len(res))
	for i, r := range res {
		out[i] = r.ID
	}
	return out
}

func jira(mailbox string, i int) store.NewPayload {
	return store.NewPayload{
		MailboxName: mailbox, Provider: "jira", Region: strings.Split(mailbox, ":")[1], Method: http.MethodPost,
		Path: "/extensions/jira/webhook/?n=" + fmt.Sprint(i), Headers: http.Header{"Content-Type": {"application/json"}},
		Body: []byte(fmt.Sprintf(`{"n":%d}`, i)),
	}
}

func kill(t *testing.T, st engine, reason string, ids ...int64) {
	t.Helper()
	for _, id := range ids {
		if err := st.DeadLetterPayload(context.Background(), id, reason, 404, "region answered 404", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
}

// The routes that were there before the console keep their shapes.
func TestAPICompatible(t *testing.T) {
	forEachEngine(t, func(t *testing.T, st engine) {
		ids3 := insert(t, st, jira("jira:us:1", 0), jira("jira:us:1", 1), jira("jira:us:1", 2))
		kill(t, st, "dropped_404", ids3[:2]...)
		if err := st.ReschedulePayload(context.Background(), ids3[2], 3, time.Now().Add(time.Hour), 500, "region answered 500"); err != nil {
			t.Fatal(err)
		}
		w := &wakes{}
		api := newAPI(st, w)
		regions := list(ok(t, api, "GET", "/sentry_silo/regions"), "regions")
		if len(regions) != 2 || regions[0]["name"] != "de" || regions[0]["breaker_open"] != true || regions[1]["breaker_open"] != false {
			t.Fatalf("regions: %v", regions)
		}
		boxes := list(ok(t, api, "GET", "/sentry_silo/mailboxes"), "mailboxes")
		if len(boxes) != 1 {
			t.Fatalf("mailboxes: %v", boxes)
		}
		mb := boxes[0]
		for _, k := range []string{"name", "region", "provider", "depth", "oldest_age_seconds", "head_attempts", "next_attempt_at"} {
			if _, ok := mb[k]; !ok {
				t.Fatalf("mailbox line lacks %s: %v", k, mb)
			}
		}
		if mb["name"] != "jira:us:1" || mb["head_attempts"].(float64) != 3 || mb["depth"].(float64) != 1 {
			t.Fatalf("mailbox line %v", mb)
		}
		page := ok(t, api, "GET", "/sentry_silo/dead_letters?limit=1")
		dls := list(page, "dead_letters")
		if len(dls) != 1 || page["next"] == nil {
			t.Fatalf("page 1: %v", page)
		}
		for _, k := range []string{"id", "mailbox", "region", "provider", "reason", "last_status", "last_error", "attempts", "date_added", "dead_at", "region_answered"} {
			if _, ok := dls[0][k]; !ok {
				t.Fatalf("dead letter lacks %s: %v", k, dls[0])
			}
		}
		if dls[0]["reason"] != "dropped_404" || int64(dls[0]["id"].(float64)) != ids3[0] {
			t.Fatalf("dead letter %v", dls[0])
		}
		page = ok(t, api, "GET", fmt.Sprintf("/sentry_silo/dead_letters?limit=1&after=%v", page["next"]))
		if got := ids(list(page, "dead_letters")); len(got) != 1 || got[0] != ids3[1] {
			t.Fatalf("page 2: %v", page)
		}
		if page := ok(t, api, "GET", fmt.Sprintf("/sentry_silo/dead_letters?after=%d", ids3[1])); len(list(page, "dead_letters")) != 0 || page["next"] != nil {
			t.Fatalf("last page: %v", page)
		}
		if out := ok(t, api, "POST", fmt.Sprintf("/sentry_silo/dead_letters/%d/replay", ids3[0])); out["payload_id"] == nil {
			t.Fatalf("replay: %v", out)
		}
		if a := do(t, api, "POST", fmt.Sprintf("/sentry_silo/dead_letters/%d/replay", ids3[0])); a.status != 404 {
			t.Fatalf("replay twice: %d", a.status)
		}
		if out := ok(t, api, "POST", "/sentry_silo/mailboxes/jira%3Aus%3A1/retry"); out["mailbox"] != "jira:us:1" || out["retried"] != true {
			t.Fatalf("retry: %v", out)
		}
		if got := w.list(); len(got) != 2 || got[0] != "" || got[1] != "jira:us:1" {
			t.Fatalf("wakes %q", got)
		}
		if out := ok(t, api, "POST", "/sentry_silo/mailboxes/jira:us:1/retry"); out["mailbox"] != "jira:us:1" {
			t.Fatalf("retry with raw colons: %v", out)
		}
	})
}

// Every error is an HTTPError with a message and the right status; 405
// says what is allowed.
func TestAPIErrors(t *testing.T) {
	st := openSQLite(t)
	api := newAPI(st, &wakes{})
	for _, tc := range []struct {
		method, path string
		status       int
		says         string
	}{
		{"GET", "/sentry_silo/dead_letters?limit=0", 400, "limit"},
		{"GET", "/sentry_silo/dead_letters?limit=abc", 400, "limit"},
		{"GET", "/sentry_silo/dead_letters?limit=100000", 400, "limit"},
		{"GET", "/sentry_silo/dead_letters?after=-1", 400, "after"},
		{"GET", "/sentry_silo/dead_letters?regoin=us", 400, `unknown parameter "regoin"`},
		{"GET", "/sentry_silo/mailboxes?mailbox=x", 400, `unknown parameter "mailbox"`},
		{"GET", "/sentry_silo/mailboxes?sort=size", 400, "sort"},
		{"GET", "/sentry_silo/mailboxes?min_age=soon", 400, "min_age"},
		{"GET", "/sentry_silo/mailboxes?after=bogus", 400, "cursor"},
		{"GET", "/sentry_silo/payloads?region=us&region=de", 400, "2 times"},
		{"GET", "/sentry_silo/payloads?region=", 400, "empty"},
		{"GET", "/sentry_silo/dead_letters?reason=dropped", 400, "reason"},
		{"GET", "/sentry_silo/dead_letters?since=yesterday", 400, "RFC 3339"},
		{"GET", "/sentry_silo/delivered?since=2026-12-02T10:00:00Z&until=2026-12-02T09:00:00Z", 400, "before"},
		{"GET", "/sentry_silo/delivered?status=99", 400, "status"},
		{"POST", "/sentry_silo/dead_letters/replay", 400, "all=true"},
		{"DELETE", "/sentry_silo/delivered", 400, "all=true"},
		{"POST", "/sentry_silo/dead_letters/replay?all=maybe", 400, "all"},
		{"POST", "/sentry_silo/dead_letters/abc/replay", 400, "positive integer"},
		{"POST", "/sentry_silo/dead_letters/999999/replay", 404, "no dead letter"},
		{"GET", "/sentry_silo/dead_letters/999999", 404, "not found"},
		{"DELETE", "/sentry_silo/dead_letters/999999", 404, "not found"},
		{"GET", "/sentry_silo/delivered/999999", 404, "not found"},
		{"POST", "/sentry_silo/delivered/999999/replay", 404, "not found"},
		{"GET", "/sentry_silo/payloads/999999", 404, "not found"},
		{"GET", "/sentry_silo/mailboxes/jira%3Aus%3Anope", 404, "no pending payload"},
		{"POST", "/sentry_silo/mailboxes/jira%3Aus%3Anope/retry", 404, "no mailbox"},
		{"POST", "/sentry_silo/regions/mars/pause", 404, "no region"},
		{"POST", "/sentry_silo/regions/us/pause", 400, "request body"},
		{"GET", "/sentry_silo/dead_letters/1/replay", 405, "POST"},
		{"POST", "/sentry_silo/mailboxes", 405, "GET"},
		{"PUT", "/sentry_silo/dead_letters", 405, "DELETE"},
		{"GET", "/sentry_silo/nothing", 404, "no admin route"},
		{"GET", "/sentry_silo/status/extra", 404, "no admin route"},
		{"GET", "/sentry_silo/status?verbose=1", 400, "takes none"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			body := []string{}
			if strings.HasSuffix(tc.path, "/pause") {
				body = append(body, `{"reason": 5}`)
			}
			a := do(t, api, tc.method, tc.path, body...)
			msg, _ := a.json["error"].(string)
			if a.status != tc.status || !strings.Contains(msg, tc.says) {
				t.Fatalf("= %d %s, want %d with %q", a.status, a.raw, tc.status, tc.says)
			}
			if tc.status == 405 && !strings.Contains(a.header.Get("Allow"), tc.says) {
				t.Fatalf("Allow = %q, want %s in it", a.header.Get("Allow"), tc.says)
			}
		})
	}
	if a := do(t, api, "OPTIONS", "/sentry_silo/dead_letters"); a.status != 204 || a.header.Get("Allow") != "GET, HEAD, DELETE, OPTIONS" {
		t.Fatalf("OPTIONS = %d %v", a.status, a.header)
	}
}

// failingStore is a store whose every call fails with err.
type failingStore struct{ err error }

func (s failingStore) MailboxHeads(context.Context, string, int) ([]store.MailboxHead, error) {
	return nil, s.err
}
func (s failingStore) MailboxDepths(context.Context, []string, int) ([]int64, error) {
	return nil, s.err
}
func (s failingStore) RetryMailbox(context.Context, string, time.Time) error { return s.err }
func (s failingStore) ListPayloads(context.Context, store.RowFilter, int64, int) ([]store.RowSummary, error) {
	return nil, s.err
}
func (s failingStore) Payload(context.Context, int64) (store.Payload, error) {
	return store.Payload{}, s.err
}
func (s failingStore) ListDeadLetters(context.Context, store.RowFilter, int64, int) ([]store.DeadLetterSummary, error) {
	return nil, s.err
}
func (s failingStore) DeadLetter(context.Context, int64) (store.DeadLetter, error) {
	return store.DeadLetter{}, s.err
}
func (s failingStore) ReplayDeadLetter(context.Context, int64, time.Time) (int64, error) {
	return 0, s.err
}
func (s failingStore) DeleteDeadLetter(context.Context, int64) error { return s.err }
func (s failingStore) MaxDeadLetterID(context.Context) (int64, error) {
	return 0, s.err
}
func (s failingStore) ReplayDeadLetters(context.Context, store.RowFilter, int64, int, time.Time) (store.Replayed, error) {
	return store.Replayed{}, s.err
}
func (s failingStore) DeleteDeadLetters(context.Context, store.RowFilter, int64, int) (int, error) {
	return 0, s.err
}
func (s failingStore) Pause(context.Context, store.Pause) (store.Pause, bool, error) {
	return store.Pause{}, false, s.err
}
func (s failingStore) Resume(context.Context, string, string) (bool, error) { return false, s.err }
func (s failingStore) Pauses(context.Context) ([]store.Pause, error)        { return nil, s.err }
func (s failingStore) Engine() string                                       { return "postgres" }
func (s failingStore) Where() string                                        { return `database "silo" on 127.0.0.1:1` }
func (s failingStore) Ping(context.Context) error                           { return s.err }

// Store failures answer 503 when the database cannot be reached and 500
// otherwise, keeping the cause for the log; a missing store part answers
// 503; the status answers 200 with the failure in it.
func TestAPIFailures(t *testing.T) {
	down := fmt.Errorf("dial: %w", store.ErrUnavailable)
	broken := errors.New("disk I/O error")
	stores := func(err error) Stores {
		f := failingStore{err}
		return Stores{Mailboxes: f, DeadLetters: f, Pauses: f, Health: f}
	}
	regions := func() []string { return []string{"us"} }
	for _, tc := range []struct {
		name         string
		api          API
		method, path string
		status       int
	}{
		{"mailboxes, database down", API{Stores: stores(down)}, "GET", "/sentry_silo/mailboxes", 503},
		{"dead letters, database down", API{Stores: stores(down)}, "GET", "/sentry_silo/dead_letters", 503},
		{"replay, database down", API{Stores: stores(down)}, "POST", "/sentry_silo/dead_letters/1/replay", 503},
		{"bulk replay, database down", API{Stores: stores(down)}, "POST", "/sentry_silo/dead_letters/replay?region=us", 503},
		{"retry, database down", API{Stores: stores(down)}, "POST", "/sentry_silo/mailboxes/a%3Ab%3Ac/retry", 503},
		{"pause, database down", API{Stores: stores(down), Regions: regions}, "POST", "/sentry_silo/regions/us/pause", 503},
		{"regions, database down", API{Stores: stores(down), Regions: regions}, "GET", "/sentry_silo/regions", 503},
		{"mailboxes, store error", API{Stores: stores(broken)}, "GET", "/sentry_silo/mailboxes", 500},
		{"retry, store error", API{Stores: stores(broken)}, "POST", "/sentry_silo/mailboxes/a%3Ab%3Ac/retry", 500},
		{"no store", API{}, "GET", "/sentry_silo/mailboxes", 503},
		{"no history store", API{Stores: stores(broken)}, "GET", "/sentry_silo/delivered", 503},
		{"outside the prefix", API{Stores: stores(broken)}, "GET", "/config/", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://localhost:2019"+tc.path, http.NoBody)
			err := tc.api.ServeHTTP(newRecorder(), req)
			var he *HTTPError
			if !errors.As(err, &he) || he.Status != tc.status || he.Message == "" {
				t.Fatalf("err = %v, want an HTTPError %d", err, tc.status)
			}
			if tc.status >= 500 && he.Err != nil && !errors.Is(err, tc.api.Stores.Mailboxes.(failingStore).err) {
				t.Fatalf("err = %v lost its cause", err)
			}
		})
	}
	api := API{Stores: stores(down), Regions: regions}
	out := ok(t, api, "GET", "/sentry_silo/status")
	storage := out["storage"].(map[string]any)
	if storage["ok"] != false || !strings.Contains(storage["error"].(string), "cannot be reached") || out["drainer"] != nil {
		t.Fatalf("status with the database down: %v", out)
	}
	if regions := list(out, "regions"); len(regions) != 1 || regions[0]["breaker"] != "closed" {
		t.Fatalf("regions without a drainer: %v", regions)
	}
}

// The status: storage, regions with the drainer's view and the pauses,
// the drainer, the rates and the directory.
func TestAPIStatus(t *testing.T) {
	forEachEngine(t, func(t *testing.T, st engine) {
		if err := st.MigrateDirectory(context.Background()); err != nil {
			t.Fatal(err)
		}
		api := newAPI(st, &wakes{})
		captures := rate.New(nil)
		captures.Add(30)
		api.Instance = Instance{
			Mode:     "control",
			Captures: captures,
			Drainer: func(regions []string) drain.Status {
				s := drain.Status{Owner: "edge-1:1:ab", Running: true, Workers: 32, Busy: 2, LeasesHeld: 3,
					DeliveredPerSecond: 1.5, RateWindow: 40 * time.Second, PausesLoadedAt: time.Now()}
				for _, r := range regions {
					rs := drain.RegionStatus{Name: r}
					if r == "de" {
						rs.BreakerOpen, rs.ConsecutiveFailures, rs.LastError, rs.LastErrorAt = true, 5, "region answered 503", time.Now()
					}
					s.Regions = append(s.Regions, rs)
				}
				return s
			},
			Directory: Directory{StaticOrganizations: 2, CacheEntries: func() int { return 7 }, Tables: st},
		}
		ok(t, api, "POST", "/sentry_silo/regions/us/pause", `{"reason":"restore","by":"alice"}`)
		out := ok(t, api, "GET", "/sentry_silo/status")
		storage := out["storage"].(map[string]any)
		if storage["ok"] != true || storage["engine"] != st.Engine() || storage["error"] != "" {
			t.Fatalf("storage: %v", storage)
		}
		regions := list(out, "regions")
		if len(regions) != 2 || regions[0]["breaker"] != "open" || regions[0]["last_error"] != "region answered 503" ||
			regions[0]["last_error_at"] == nil || regions[1]["breaker"] != "closed" || regions[1]["last_error_at"] != nil {
			t.Fatalf("regions: %v", regions)
		}
		if p, _ := regions[1]["paused"].(map[string]any); p["paused_by"] != "alice" || p["reason"] != "restore" {
			t.Fatalf("us is not shown paused: %v", regions[1])
		}
		d := out["drainer"].(map[string]any)
		if d["workers"].(float64) != 32 || d["busy"].(float64) != 2 || d["leases_held"].(float64) != 3 || d["pauses_loaded_at"] == nil {
			t.Fatalf("drainer: %v", d)
		}
		rates := out["rates"].(map[string]any)
		if rates["deliveries_per_second"].(float64) != 1.5 || rates["captures_per_second"].(float64) <= 0 || rates["window_seconds"].(float64) < 40 {
			t.Fatalf("rates: %v", rates)
		}
		dir := out["directory"].(map[string]any)
		if dir["static_organizations"].(float64) != 2 || dir["cache_entries"].(float64) != 7 || fmt.Sprint(dir["missing_tables"]) != "[]" || dir["error"] != "" {
			t.Fatalf("directory: %v", dir)
		}
	})
}

// recorder is a minimal http.ResponseWriter.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder                    { return &recorder{header: http.Header{}, status: 200} }
func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(s int)           { r.status = s }
