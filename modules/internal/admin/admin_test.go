package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// engine is what the tests need of a storage engine: the admin API's
// Store, and the drainer's writes that set dead letters and backoff up.
type engine interface {
	Store
	InsertPayloads(ctx context.Context, payloads []store.NewPayload) ([]store.InsertResult, error)
	DeadLetterPayload(ctx context.Context, id int64, reason string, lastStatus int, lastError string, now time.Time) error
	ReschedulePayload(ctx context.Context, id int64, attempts int, scheduleFor time.Time, lastStatus int, lastError string) error
}

func openSQLite(t *testing.T) engine {
	t.Helper()
	s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "silo.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func openPostgres(t *testing.T) engine {
	t.Helper()
	cfg, err := store.PostgresPoolConfig(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := store.NewPostgres(pool)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAPI(t *testing.T) {
	for _, e := range []struct {
		name string
		open func(t *testing.T) engine
	}{
		{"SQLite", openSQLite},
		{"Postgres", openPostgres},
	} {
		t.Run(e.name, func(t *testing.T) { testAPI(t, e.open(t)) })
	}
}

// do sends one request to api and returns its status and JSON body (an
// *HTTPError's message under "error").
func do(t *testing.T, api API, method, path string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://localhost:2019"+path, nil)
	rec := newRecorder()
	err := api.ServeHTTP(rec, req)
	if err != nil {
		he, ok := err.(*HTTPError)
		if !ok {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return he.Status, map[string]any{"error": he.Message}
	}
	var out map[string]any
	if err := json.Unmarshal(rec.body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: body %q: %v", method, path, rec.body.String(), err)
	}
	return rec.status, out
}

// The admin API over a store.
func testAPI(t *testing.T, st engine) {
	ctx := context.Background()
	var ps []store.NewPayload
	for i := 0; i < 3; i++ {
		ps = append(ps, store.NewPayload{
			MailboxName: "jira:us:1", Provider: "jira", Region: "us", Method: http.MethodPost,
			Path: "/extensions/jira/webhook/?n=" + fmt.Sprint(i), Headers: http.Header{"Content-Type": {"application/json"}},
			Body: []byte(fmt.Sprintf("1#%d", i)),
		})
	}
	res, err := st.InsertPayloads(ctx, ps)
	if err != nil {
		t.Fatal(err)
	}
	ids := []int64{res[0].ID, res[1].ID, res[2].ID}
	for _, id := range ids[:2] {
		if err := st.DeadLetterPayload(ctx, id, "dropped_404", 404, "region answered 404", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.ReschedulePayload(ctx, ids[2], 3, time.Now().Add(time.Hour), 500, "region answered 500"); err != nil {
		t.Fatal(err)
	}
	var woken []string
	var wmu sync.Mutex
	api := API{Store: st, Wake: func(names ...string) {
		wmu.Lock()
		woken = append(woken, strings.Join(names, ","))
		wmu.Unlock()
	}, Regions: func() []string { return []string{"de", "us"} }, Paused: func(region string) bool { return region == "de" }}

	status, out := do(t, api, "GET", "/sentry_silo/regions")
	if regions, _ := out["regions"].([]any); status != 200 || len(regions) != 2 || regions[0].(map[string]any)["breaker_open"] != true {
		t.Fatalf("regions: %d %v", status, out)
	}
	status, out = do(t, api, "GET", "/sentry_silo/mailboxes")
	boxes, _ := out["mailboxes"].([]any)
	if status != 200 || len(boxes) != 1 {
		t.Fatalf("mailboxes: %d %v", status, out)
	}
	mb := boxes[0].(map[string]any)
	for _, k := range []string{"name", "region", "provider", "depth", "oldest_age_seconds", "head_attempts", "next_attempt_at"} {
		if _, ok := mb[k]; !ok {
			t.Fatalf("mailbox line lacks %s: %v", k, mb)
		}
	}
	if mb["name"] != "jira:us:1" || mb["head_attempts"].(float64) != 3 || mb["depth"].(float64) != 1 {
		t.Fatalf("mailbox line %v", mb)
	}

	status, out = do(t, api, "GET", "/sentry_silo/dead_letters?limit=1")
	dls, _ := out["dead_letters"].([]any)
	if status != 200 || len(dls) != 1 || out["next"] == nil {
		t.Fatalf("page 1: %d %v", status, out)
	}
	dl := dls[0].(map[string]any)
	for _, k := range []string{"id", "mailbox", "region", "provider", "reason", "last_status", "last_error", "attempts", "date_added", "dead_at"} {
		if _, ok := dl[k]; !ok {
			t.Fatalf("dead letter lacks %s: %v", k, dl)
		}
	}
	if dl["reason"] != "dropped_404" || dl["id"].(float64) != float64(ids[0]) {
		t.Fatalf("dead letter %v", dl)
	}
	status, out = do(t, api, "GET", fmt.Sprintf("/sentry_silo/dead_letters?limit=1&after=%v", out["next"]))
	dls, _ = out["dead_letters"].([]any)
	if status != 200 || len(dls) != 1 || dls[0].(map[string]any)["id"].(float64) != float64(ids[1]) {
		t.Fatalf("page 2: %d %v", status, out)
	}
	status, out = do(t, api, "GET", fmt.Sprintf("/sentry_silo/dead_letters?after=%d", ids[1]))
	if dls, _ := out["dead_letters"].([]any); status != 200 || len(dls) != 0 || out["next"] != nil {
		t.Fatalf("last page: %d %v", status, out)
	}

	status, out = do(t, api, "POST", fmt.Sprintf("/sentry_silo/dead_letters/%d/replay", ids[0]))
	if status != 200 || out["payload_id"] == nil {
		t.Fatalf("replay: %d %v", status, out)
	}
	status, _ = do(t, api, "POST", fmt.Sprintf("/sentry_silo/dead_letters/%d/replay", ids[0]))
	if status != 404 {
		t.Fatalf("replay twice: %d", status)
	}
	status, out = do(t, api, "POST", "/sentry_silo/mailboxes/"+strings.ReplaceAll("jira:us:1", ":", "%3A")+"/retry")
	if status != 200 || out["mailbox"] != "jira:us:1" {
		t.Fatalf("retry: %d %v", status, out)
	}
	boxesNow, _ := st.Mailboxes(ctx, time.Now())
	if len(boxesNow) != 1 || boxesNow[0].Depth != 2 || boxesNow[0].NextAttemptAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("after retry and replay: %+v", boxesNow)
	}
	wmu.Lock()
	if len(woken) != 2 || woken[1] != "jira:us:1" {
		t.Fatalf("wakes %q", woken)
	}
	wmu.Unlock()

	for _, bad := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/sentry_silo/dead_letters?limit=0", 400},
		{"GET", "/sentry_silo/dead_letters?limit=abc", 400},
		{"GET", "/sentry_silo/dead_letters?limit=100000", 400},
		{"GET", "/sentry_silo/dead_letters?after=-1", 400},
		{"POST", "/sentry_silo/dead_letters/abc/replay", 400},
		{"POST", "/sentry_silo/dead_letters/999999/replay", 404},
		{"POST", "/sentry_silo/mailboxes/jira%3Aus%3Anope/retry", 404},
		{"GET", "/sentry_silo/dead_letters/1/replay", 405},
		{"POST", "/sentry_silo/mailboxes", 405},
		{"GET", "/sentry_silo/nothing", 404},
	} {
		if status, out := do(t, api, bad.method, bad.path); status != bad.status || out["error"] == "" {
			t.Errorf("%s %s = %d %v, want %d", bad.method, bad.path, status, out, bad.status)
		}
	}
}

// failingStore is a store whose every call fails with err.
type failingStore struct{ err error }

func (s failingStore) Mailboxes(context.Context, time.Time) ([]store.MailboxStats, error) {
	return nil, s.err
}
func (s failingStore) DeadLetters(context.Context, int, int64) ([]store.DeadLetter, error) {
	return nil, s.err
}
func (s failingStore) ReplayDeadLetter(context.Context, int64, time.Time) (int64, error) {
	return 0, s.err
}
func (s failingStore) RetryMailbox(context.Context, string, time.Time) error { return s.err }

// Store failures answer 503 when the database cannot be reached and 500
// otherwise, keeping the cause for the log; without a store every route
// answers 503; without Regions the regions route does not exist; with
// Regions but no drainer (Paused nil) no region is paused.
func TestAPIFailures(t *testing.T) {
	down := fmt.Errorf("dial: %w", store.ErrUnavailable)
	broken := errors.New("disk I/O error")
	tests := []struct {
		name         string
		api          API
		method, path string
		status       int
	}{
		{"mailboxes, database down", API{Store: failingStore{down}}, "GET", "/sentry_silo/mailboxes", 503},
		{"dead letters, database down", API{Store: failingStore{down}}, "GET", "/sentry_silo/dead_letters", 503},
		{"replay, database down", API{Store: failingStore{down}}, "POST", "/sentry_silo/dead_letters/1/replay", 503},
		{"retry, database down", API{Store: failingStore{down}}, "POST", "/sentry_silo/mailboxes/a%3Ab%3Ac/retry", 503},
		{"mailboxes, store error", API{Store: failingStore{broken}}, "GET", "/sentry_silo/mailboxes", 500},
		{"retry, store error", API{Store: failingStore{broken}}, "POST", "/sentry_silo/mailboxes/a%3Ab%3Ac/retry", 500},
		{"no store", API{}, "GET", "/sentry_silo/mailboxes", 503},
		{"no regions", API{Store: failingStore{broken}}, "GET", "/sentry_silo/regions", 404},
		{"outside the prefix", API{Store: failingStore{broken}}, "GET", "/config/", 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://localhost:2019"+tc.path, nil)
			err := tc.api.ServeHTTP(newRecorder(), req)
			var he *HTTPError
			if !errors.As(err, &he) || he.Status != tc.status || he.Message == "" {
				t.Fatalf("err = %v, want an HTTPError %d", err, tc.status)
			}
			if tc.status >= 500 && tc.api.Store != nil && !errors.Is(err, tc.api.Store.(failingStore).err) {
				t.Fatalf("err = %v lost its cause", err)
			}
		})
	}

	api := API{Store: failingStore{broken}, Regions: func() []string { return []string{"de", "us"} }}
	status, out := do(t, api, "GET", "/sentry_silo/regions")
	regions, _ := out["regions"].([]any)
	if status != 200 || len(regions) != 2 {
		t.Fatalf("regions: %d %v", status, out)
	}
	for _, r := range regions {
		if r.(map[string]any)["breaker_open"] != false {
			t.Fatalf("a region is paused without a drainer: %v", out)
		}
	}
	api.Regions = func() []string { return nil }
	if status, out := do(t, api, "GET", "/sentry_silo/regions"); status != 200 || fmt.Sprint(out["regions"]) != "[]" {
		t.Fatalf("no regions: %d %v, want an empty list", status, out)
	}
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
