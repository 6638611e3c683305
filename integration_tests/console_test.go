package integration_tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// The operator console (docs/admin-api.md) on the real binary, through
// Caddy's admin listener.

// console sends one admin request with an optional JSON body and returns
// the status and the decoded answer; every answer must be a JSON object.
func (in *drainInstance) console(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+in.c.AdminAddr+path, strings.NewReader(body))
	req.Header.Set("Origin", "http://"+in.c.AdminAddr)
	resp, err := drainClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(b), &out); err != nil {
		t.Fatalf("%s %s: %d, not a JSON object: %q", method, path, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, out
}

// must is console expecting a 200.
func (in *drainInstance) must(t *testing.T, method, path, body string) map[string]any {
	t.Helper()
	status, out := in.console(t, method, path, body)
	if status != http.StatusOK {
		t.Fatalf("%s %s = %d %v", method, path, status, out)
	}
	return out
}

// items is the list under key of an answer.
func items(t *testing.T, out map[string]any, key string) []map[string]any {
	t.Helper()
	raw, ok := out[key].([]any)
	if !ok {
		t.Fatalf("answer has no list %q: %v", key, out)
	}
	var list []map[string]any
	for _, it := range raw {
		list = append(list, it.(map[string]any))
	}
	return list
}

// captureSigned posts one GitHub push for installation inst carrying a
// signature and a bearer token, which the console must never show.
func (in *drainInstance) captureSigned(t *testing.T, inst int, id string) []byte {
	t.Helper()
	body := fmt.Sprintf(`{"installation":{"id":%d},"repository":{"id":%d},"delivery":%q}`, 5000+inst, inst, id)
	req, _ := http.NewRequest(http.MethodPost, in.base+"/extensions/github/webhook/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", id)
	req.Header.Set("X-Hub-Signature-256", "sha256="+consoleSecret)
	req.Header.Set("Authorization", "Bearer "+consoleSecret)
	resp, err := drainClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("capture %s: %d\n%s", id, resp.StatusCode, in.c.Logs())
	}
	return []byte(body)
}

const consoleSecret = "c0ffee5ecret7a11"

// deliveredOrder is the order the region received the ids with a prefix.
func (r *drainRegion) deliveredOrder(prefix string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, id := range r.order {
		if strings.HasPrefix(id, prefix) {
			out = append(out, id)
		}
	}
	return out
}

// Filters, opening a dead letter, bulk replay in order, delete by filter
// and retry of a mailbox head, on SQLite. Before the console, ?mailbox=
// and ?reason= were ignored: every dead letter came back.
func TestConsoleDeadLetters(t *testing.T) {
	s := newDrainSetup(t)
	s.us.status.Store(404)
	// A 1h backoff: a row the region refused waits, unless retried.
	a := s.start(t, "\t\t\tbackoff 1h 2 1h")
	s.seed(t, 2)
	var body []byte
	for i := range 5 {
		body = a.captureSigned(t, 1, fmt.Sprint("f-", i))
	}
	a.captureSigned(t, 2, "g-0")
	waitFor(t, "6 dead letters", 20*time.Second, func() bool {
		_, out := a.console(t, "GET", "/sentry_silo/dead_letters", "")
		return len(items(t, out, "dead_letters")) == 6
	})
	all := items(t, a.must(t, "GET", "/sentry_silo/dead_letters", ""), "dead_letters")
	box1, box2 := all[0]["mailbox"].(string), all[5]["mailbox"].(string)
	if box1 == box2 {
		t.Fatalf("one mailbox for two installations: %v", all)
	}

	// Filters select; unknown, repeated and empty parameters are refused.
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"mailbox=" + url.QueryEscape(box1), 5},
		{"mailbox=" + url.QueryEscape(box2), 1},
		{"reason=attempts_exceeded", 0},
		{"reason=dropped_404", 6},
		{"region=us&provider=github&limit=4", 4},
		{"since=2000-01-01T00:00:00Z&until=2001-01-01T00:00:00Z", 0},
	} {
		if got := items(t, a.must(t, "GET", "/sentry_silo/dead_letters?"+tc.query, ""), "dead_letters"); len(got) != tc.want {
			t.Errorf("?%s: %d dead letters, want %d", tc.query, len(got), tc.want)
		}
	}
	for _, tc := range []struct{ method, path, says string }{
		{"GET", "/sentry_silo/dead_letters?regoin=us", `unknown parameter "regoin"`},
		{"GET", "/sentry_silo/dead_letters?mailbox=a&mailbox=b", "2 times"},
		{"GET", "/sentry_silo/dead_letters?reason=", "empty"},
		{"GET", "/sentry_silo/mailboxes?mailbox=x", `unknown parameter "mailbox"`},
		{"POST", "/sentry_silo/dead_letters/replay?regoin=us", `unknown parameter "regoin"`},
		{"POST", "/sentry_silo/dead_letters/replay", "all=true"},
		{"DELETE", "/sentry_silo/dead_letters", "all=true"},
	} {
		status, out := a.console(t, tc.method, tc.path, "")
		if msg, _ := out["error"].(string); status != 400 || !strings.Contains(msg, tc.says) {
			t.Errorf("%s %s = %d %v, want 400 saying %q", tc.method, tc.path, status, out, tc.says)
		}
	}
	if n := len(items(t, a.must(t, "GET", "/sentry_silo/dead_letters", ""), "dead_letters")); n != 6 {
		t.Fatalf("a refused bulk action touched rows: %d dead letters left", n)
	}
	// A method the route does not take: 405, its Allow header, a JSON body.
	req, _ := http.NewRequest(http.MethodPut, "http://"+a.c.AdminAddr+"/sentry_silo/dead_letters", nil)
	req.Header.Set("Origin", "http://"+a.c.AdminAddr)
	resp, err := drainClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD, DELETE, OPTIONS" || !strings.Contains(string(msg), `"error"`) {
		t.Fatalf("PUT: %d Allow %q %s", resp.StatusCode, resp.Header.Get("Allow"), msg)
	}

	// Open one: masked headers, the body's size and preview.
	id := int64(all[4]["id"].(float64))
	one := a.must(t, "GET", fmt.Sprintf("/sentry_silo/dead_letters/%d", id), "")
	raw, _ := json.Marshal(one)
	if strings.Contains(string(raw), consoleSecret) {
		t.Fatalf("a secret in the answer: %s", raw)
	}
	hdrs := one["headers"].(map[string]any)
	if fmt.Sprint(hdrs["X-Hub-Signature-256"]) != "[[masked]]" || fmt.Sprint(hdrs["X-Github-Delivery"]) != "[f-4]" {
		t.Fatalf("headers %v", hdrs)
	}
	b := one["body"].(map[string]any)
	if b["size"].(float64) != float64(len(body)) || b["preview"] != string(body) || b["encoding"] != "text" || b["truncated"] != false ||
		one["reason"] != "dropped_404" || one["method"] != "POST" || one["path"] != "/extensions/github/webhook/" {
		t.Fatalf("dead letter %s", raw)
	}

	// Replay by filter, in the original order; a repeat replays nothing.
	s.us.status.Store(0)
	q := "/sentry_silo/dead_letters/replay?mailbox=" + url.QueryEscape(box1)
	if out := a.must(t, "POST", q, ""); out["replayed"].(float64) != 5 || out["more"] != false {
		t.Fatalf("bulk replay: %v", out)
	}
	if out := a.must(t, "POST", q, ""); out["replayed"].(float64) != 0 {
		t.Fatalf("repeated bulk replay: %v", out)
	}
	waitFor(t, "the 5 replays delivered", 20*time.Second, func() bool { return len(s.us.deliveredOrder("f-")) == 5 })
	if got := s.us.deliveredOrder("f-"); !slices.Equal(got, []string{"f-0", "f-1", "f-2", "f-3", "f-4"}) {
		t.Fatalf("replayed in the order %v", got)
	}

	// Delete by filter; a repeat deletes nothing.
	if out := a.must(t, "DELETE", "/sentry_silo/dead_letters?reason=dropped_404", ""); out["deleted"].(float64) != 1 {
		t.Fatalf("bulk delete: %v", out)
	}
	if out := a.must(t, "DELETE", "/sentry_silo/dead_letters?reason=dropped_404", ""); out["deleted"].(float64) != 0 {
		t.Fatalf("repeated bulk delete: %v", out)
	}

	// Retry now: a head refused once waits an hour, unless retried.
	// (500: a 502, 503 or 504 is an outage, which spends no attempt.)
	s.us.status.Store(500)
	a.captureSigned(t, 2, "r-0")
	waitFor(t, "the head refused once", 20*time.Second, func() bool {
		_, out := a.console(t, "GET", "/sentry_silo/mailboxes/"+url.PathEscape(box2), "")
		mb, _ := out["mailbox"].(map[string]any)
		return mb != nil && mb["head_attempts"].(float64) == 1
	})
	one = a.must(t, "GET", "/sentry_silo/mailboxes/"+url.PathEscape(box2), "")
	if head := items(t, one, "head"); len(head) != 1 || head[0]["last_status"].(float64) != 500 {
		t.Fatalf("mailbox %v", one)
	}
	s.us.status.Store(0)
	if out := a.must(t, "POST", "/sentry_silo/mailboxes/"+url.PathEscape(box2)+"/retry", ""); out["retried"] != true {
		t.Fatalf("retry: %v", out)
	}
	waitFor(t, "the retried head delivered", 20*time.Second, func() bool { return len(s.us.deliveredOrder("r-")) == 1 })

	// The delivered history is off by default.
	if out := a.must(t, "GET", "/sentry_silo/delivered", ""); len(items(t, out, "delivered")) != 0 || out["retention_seconds"].(float64) != 0 {
		t.Fatalf("delivered history without the option: %v", out)
	}
}

// mailboxOf is the mailbox of the pending payload with that delivery id,
// found by opening each payload (the listing shows no headers).
func (in *drainInstance) mailboxOf(t *testing.T, delivery string) string {
	t.Helper()
	for _, p := range items(t, in.must(t, "GET", "/sentry_silo/payloads?limit=1000", ""), "payloads") {
		one := in.must(t, "GET", fmt.Sprintf("/sentry_silo/payloads/%d", int64(p["id"].(float64))), "")
		if fmt.Sprint(one["headers"].(map[string]any)["X-Github-Delivery"]) == "["+delivery+"]" {
			return one["mailbox"].(string)
		}
	}
	t.Fatalf("no pending payload %s", delivery)
	return ""
}

// pausesLoadedAt is when in's drainer last read the pauses.
func (in *drainInstance) pausesLoadedAt(t *testing.T) time.Time {
	t.Helper()
	_, out := in.console(t, "GET", "/sentry_silo/status", "")
	d, _ := out["drainer"].(map[string]any)
	s, _ := d["pauses_loaded_at"].(string)
	at, _ := time.Parse(time.RFC3339Nano, s)
	return at
}

// readPausesTwice waits until each instance's drainer read the pauses
// twice after now: one backstop scan (poll_interval) went by with every
// mailbox looked at, and had it not been held, handed out.
func readPausesTwice(t *testing.T, ins ...*drainInstance) {
	t.Helper()
	for _, in := range ins {
		since := time.Now()
		for range 2 {
			waitFor(t, "the drainer reading the pauses", 20*time.Second, func() bool { return in.pausesLoadedAt(t).After(since) })
			since = in.pausesLoadedAt(t)
		}
	}
}

// A pause is stored, obeyed by every instance, survives a restart, and
// holds without spending an attempt while captures keep arriving; resume
// delivers what waited, in order. Two binaries on one PostgreSQL.
func TestConsolePauseTwoInstances(t *testing.T) {
	s := newDrainSetupPostgres(t)
	a := s.start(t, "")
	s.seed(t, 2)
	b := s.start(t, "")
	out := a.must(t, "POST", "/sentry_silo/regions/us/pause", `{"reason": "restore of the us database", "by": "alice"}`)
	p := out["pause"].(map[string]any)
	if out["created"] != true || p["kind"] != "region" || p["name"] != "us" || p["paused_by"] != "alice" {
		t.Fatalf("pause: %v", out)
	}
	if out := b.must(t, "POST", "/sentry_silo/regions/us/pause", `{"by": "bob"}`); out["created"] != false ||
		out["pause"].(map[string]any)["paused_by"] != "alice" {
		t.Fatalf("pausing again on the other instance: %v", out)
	}
	readPausesTwice(t, a, b)
	for i := range 4 {
		in := a
		if i%2 == 1 {
			in = b
		}
		in.capture(t, 1, fmt.Sprint("p1-", i))
		in.capture(t, 2, fmt.Sprint("p2-", i))
	}
	a.capture(t, 1, "p1-4") // mailbox 1 is the deeper one
	readPausesTwice(t, a, b)
	held := func(what string) {
		t.Helper()
		if _, total, _ := s.us.delivered(); total != 0 {
			t.Fatalf("%s: %d deliveries to a paused region", what, total)
		}
		var n, attempts int
		if err := s.db.QueryRow(`SELECT count(*), coalesce(max(attempts), 0) FROM silo_webhook_payload`).Scan(&n, &attempts); err != nil {
			t.Fatal(err)
		}
		if n != 9 || attempts != 0 {
			t.Fatalf("%s: %d rows pending with up to %d attempts, want 9 with 0", what, n, attempts)
		}
	}
	held("while paused")
	boxes := items(t, b.must(t, "GET", "/sentry_silo/mailboxes", ""), "mailboxes")
	if len(boxes) != 2 {
		t.Fatalf("mailboxes %v", boxes)
	}
	for _, mb := range boxes {
		if mb["depth"].(float64) < 4 || mb["head_attempts"].(float64) != 0 || mb["paused"].(map[string]any)["reason"] != "restore of the us database" {
			t.Fatalf("mailbox while its region is paused: %v", mb)
		}
	}
	// Sorted by depth, paged one at a time; filters.
	page := b.must(t, "GET", "/sentry_silo/mailboxes?sort=depth&limit=1", "")
	deepest := items(t, page, "mailboxes")
	if len(deepest) != 1 || deepest[0]["depth"].(float64) != 5 || page["next"] == nil {
		t.Fatalf("sort=depth page 1: %v", page)
	}
	page = b.must(t, "GET", "/sentry_silo/mailboxes?sort=depth&limit=1&after="+url.QueryEscape(page["next"].(string)), "")
	if second := items(t, page, "mailboxes"); len(second) != 1 || second[0]["depth"].(float64) != 4 || page["next"] != nil {
		t.Fatalf("sort=depth page 2: %v", page)
	}
	if oldest := items(t, b.must(t, "GET", "/sentry_silo/mailboxes?sort=oldest", ""), "mailboxes"); len(oldest) != 2 || oldest[0]["name"] != deepest[0]["name"] {
		t.Fatalf("sort=oldest (mailbox 1's head came first): %v", oldest)
	}
	for q, want := range map[string]int{"provider=github&region=us": 2, "provider=gitlab": 0, "region=de": 0, "min_age=1h": 0, "min_age=1ms": 2} {
		if got := items(t, b.must(t, "GET", "/sentry_silo/mailboxes?"+q, ""), "mailboxes"); len(got) != want {
			t.Errorf("mailboxes?%s: %d, want %d", q, len(got), want)
		}
	}

	// The pause is in the database: a restarted instance obeys it.
	a.c.Kill()
	a.c.Restart(t)
	readPausesTwice(t, a)
	held("after a restart")
	st := a.must(t, "GET", "/sentry_silo/status", "")
	if r := items(t, st, "regions"); len(r) != 1 || r[0]["paused"] == nil || r[0]["breaker"] != "closed" {
		t.Fatalf("status regions after the restart: %v", st)
	}

	// Resume the region with one mailbox paused: the other is delivered.
	box2 := b.mailboxOf(t, "p2-0")
	if out := b.must(t, "POST", "/sentry_silo/mailboxes/"+url.PathEscape(box2)+"/pause", ""); out["created"] != true {
		t.Fatalf("mailbox pause: %v", out)
	}
	if out := b.must(t, "POST", "/sentry_silo/regions/us/resume", ""); out["resumed"] != true {
		t.Fatalf("resume: %v", out)
	}
	if out := a.must(t, "POST", "/sentry_silo/regions/us/resume", ""); out["resumed"] != false {
		t.Fatalf("resume again: %v", out)
	}
	waitFor(t, "mailbox 1 delivered", 30*time.Second, func() bool { return len(s.us.deliveredOrder("p1-")) == 5 })
	readPausesTwice(t, a, b)
	if got := s.us.deliveredOrder("p2-"); len(got) != 0 {
		t.Fatalf("a paused mailbox was delivered: %v", got)
	}
	if ps := items(t, a.must(t, "GET", "/sentry_silo/pauses", ""), "pauses"); len(ps) != 1 || ps[0]["name"] != box2 {
		t.Fatalf("pauses %v", ps)
	}
	if out := a.must(t, "POST", "/sentry_silo/mailboxes/"+url.PathEscape(box2)+"/resume", ""); out["resumed"] != true {
		t.Fatalf("mailbox resume: %v", out)
	}
	waitFor(t, "mailbox 2 delivered", 30*time.Second, func() bool { return len(s.us.deliveredOrder("p2-")) == 4 })
	for prefix, n := range map[string]int{"p1-": 5, "p2-": 4} {
		var want []string
		for i := range n {
			want = append(want, fmt.Sprint(prefix, i))
		}
		if got := s.us.deliveredOrder(prefix); !slices.Equal(got, want) {
			t.Fatalf("delivered %v, want %v", got, want)
		}
	}
}

// With delivered_retention the delivered rows are kept, listed, opened and
// replayed (once, unless again); the status shows the instance.
func TestConsoleDeliveredHistory(t *testing.T) {
	s := newDrainSetup(t)
	a := s.start(t, "\t\t\tdelivered_retention 1h")
	s.seed(t, 1)
	for i := range 3 {
		a.captureSigned(t, 1, fmt.Sprint("h-", i))
	}
	waitFor(t, "3 delivered", 20*time.Second, func() bool { return len(s.us.deliveredOrder("h-")) == 3 })
	waitFor(t, "mailboxes empty", 10*time.Second, func() bool { return s.pending(t) == 0 })
	out := a.must(t, "GET", "/sentry_silo/delivered", "")
	rows := items(t, out, "delivered")
	if len(rows) != 3 || out["retention_seconds"].(float64) != 3600 {
		t.Fatalf("delivered history: %v", out)
	}
	var last time.Time
	for _, r := range rows {
		at, err := time.Parse(time.RFC3339Nano, r["delivered_at"].(string))
		if err != nil || at.Before(last) || r["status"].(float64) != 200 || r["duration_ms"].(float64) <= 0 || r["replayed_at"] != nil {
			t.Fatalf("delivered row %v (after %v)", r, last)
		}
		last = at
	}
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"status=200", 3}, {"status=500", 0}, {"mailbox=" + url.QueryEscape(rows[0]["mailbox"].(string)), 3}, {"region=de", 0},
	} {
		if got := items(t, a.must(t, "GET", "/sentry_silo/delivered?"+tc.query, ""), "delivered"); len(got) != tc.want {
			t.Errorf("?%s: %d rows, want %d", tc.query, len(got), tc.want)
		}
	}
	if status, _ := a.console(t, "GET", "/sentry_silo/delivered?reason=dropped_404", ""); status != 400 {
		t.Errorf("?reason= on the delivered history: %d, want 400", status)
	}
	first := int64(rows[0]["id"].(float64))
	one := a.must(t, "GET", fmt.Sprintf("/sentry_silo/delivered/%d", first), "")
	if raw, _ := json.Marshal(one); strings.Contains(string(raw), consoleSecret) || one["headers"].(map[string]any)["Authorization"] == nil {
		t.Fatalf("opened delivered row %s", raw)
	}

	// Replay one: a copy is delivered; a repeat is a 409.
	path := fmt.Sprintf("/sentry_silo/delivered/%d/replay", first)
	if out := a.must(t, "POST", path, ""); out["payload_id"] == nil {
		t.Fatalf("replay: %v", out)
	}
	if status, out := a.console(t, "POST", path, ""); status != http.StatusConflict {
		t.Fatalf("replay twice: %d %v", status, out)
	}
	waitFor(t, "the copy delivered", 20*time.Second, func() bool { return len(s.us.deliveredOrder("h-")) == 4 })
	// Replay the hour (here: up to the last original delivery): the
	// replayed row is skipped, the others go in delivery order.
	until := url.QueryEscape(last.Add(time.Microsecond).Format(time.RFC3339Nano))
	q := "/sentry_silo/delivered/replay?region=us&until=" + until
	if out := a.must(t, "POST", q, ""); out["replayed"].(float64) != 2 {
		t.Fatalf("bulk replay: %v", out)
	}
	if out := a.must(t, "POST", q, ""); out["replayed"].(float64) != 0 {
		t.Fatalf("repeated bulk replay: %v", out)
	}
	waitFor(t, "the copies delivered", 20*time.Second, func() bool { return len(s.us.deliveredOrder("h-")) == 6 })
	if got := s.us.deliveredOrder("h-"); !slices.Equal(got, []string{"h-0", "h-1", "h-2", "h-0", "h-1", "h-2"}) {
		t.Fatalf("delivered in the order %v", got)
	}

	st := a.must(t, "GET", "/sentry_silo/status", "")
	storage, drainer, rates := st["storage"].(map[string]any), st["drainer"].(map[string]any), st["rates"].(map[string]any)
	regions := items(t, st, "regions")
	if storage["engine"] != "sqlite" || storage["ok"] != true || drainer["running"] != true || drainer["delivered_retention_seconds"].(float64) != 3600 ||
		rates["captures_per_second"].(float64) <= 0 || rates["deliveries_per_second"].(float64) <= 0 ||
		len(regions) != 1 || regions[0]["name"] != "us" || regions[0]["breaker"] != "closed" || st["mode"] != "control" {
		t.Fatalf("status %v", st)
	}
	if out := a.must(t, "DELETE", "/sentry_silo/delivered?all=true", ""); out["deleted"].(float64) < 6 {
		t.Fatalf("delete all: %v", out)
	}
	if n := len(items(t, a.must(t, "GET", "/sentry_silo/delivered", ""), "delivered")); n != 0 {
		t.Fatalf("%d rows after delete all", n)
	}
}

// A pause reaches the other instances' drainers at once (an empty NOTIFY
// makes them read the pauses), not at their next backstop scan, which is
// an hour away here.
func TestConsolePauseWakesOtherInstances(t *testing.T) {
	s := newDrainSetupPostgres(t)
	hourly := func() *drainInstance {
		admin, site := harness.ReservePort(t), harness.ReservePort(t)
		cfg := strings.Replace(s.caddyfile(admin, site, ""), "poll_interval 200ms", "poll_interval 1h", 1)
		return &drainInstance{c: harness.Start(t, admin, cfg), base: site.URL()}
	}
	a := hourly()
	s.seed(t, 1)
	b := hourly()
	var loaded time.Time
	waitFor(t, "b's first reading of the pauses", 20*time.Second, func() bool { loaded = b.pausesLoadedAt(t); return !loaded.IsZero() })
	// A NOTIFY sent before b LISTENs is lost (b's next scan, here an hour
	// away, would find the pause): wait for both drainers to listen.
	waitFor(t, "both drainers listening", 20*time.Second, func() bool {
		var n int
		err := s.db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'`).Scan(&n)
		return err == nil && n == 2
	})
	loaded = b.pausesLoadedAt(t)
	for _, action := range []string{"pause", "resume"} {
		a.must(t, "POST", "/sentry_silo/regions/us/"+action, "")
		waitFor(t, "b reading the pauses after the "+action+" on a", 20*time.Second, func() bool { return b.pausesLoadedAt(t).After(loaded) })
		loaded = b.pausesLoadedAt(t)
	}
}
