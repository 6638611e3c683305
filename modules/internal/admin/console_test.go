package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// collect pages through a listing with the given query, following next,
// and returns every item.
func collect(t *testing.T, api API, path, key string) []map[string]any {
	t.Helper()
	var all []map[string]any
	after := ""
	for pages := 0; pages < 1000; pages++ {
		p := path
		if after != "" {
			sep := "?"
			if strings.Contains(p, "?") {
				sep = "&"
			}
			p += sep + "after=" + url.QueryEscape(after)
		}
		out := ok(t, api, "GET", p)
		all = append(all, list(out, key)...)
		switch next := out["next"].(type) {
		case nil:
			return all
		case string:
			after = next
		case float64:
			after = fmt.Sprint(int64(next))
		}
	}
	t.Fatalf("%s: no end after 1000 pages", path)
	return nil
}

func names(items []map[string]any, key string) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, it[key].(string))
	}
	return out
}

// The mailbox listing: every mailbox once in each sort, in its order,
// whatever the page size; filters; the depth cap; one mailbox.
func TestAPIMailboxes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, st engine) {
		// Mailbox i of us holds i+1 rows; m7 is the oldest head (stored
		// alone, first); de holds one mailbox, stored last.
		insert(t, st, jira("jira:us:m7", 0))
		var ps []store.NewPayload
		for i := range 12 {
			for k := 0; k <= i; k++ {
				ps = append(ps, jira(fmt.Sprintf("jira:us:m%d", i), k))
			}
		}
		gh := jira("github:de:g", 0)
		gh.Provider = "github"
		insert(t, st, ps...)
		insert(t, st, gh)
		api := newAPI(st, &wakes{})
		byName := names(collect(t, api, "/sentry_silo/mailboxes?limit=5", "mailboxes"), "name")
		want := []string{"github:de:g"}
		for i := range 12 {
			want = append(want, fmt.Sprintf("jira:us:m%d", i))
		}
		slices.Sort(want)
		if !slices.Equal(byName, want) {
			t.Fatalf("by name = %v\nwant %v", byName, want)
		}
		byDepth := collect(t, api, "/sentry_silo/mailboxes?sort=depth&limit=4&depth_cap=10", "mailboxes")
		got := names(byDepth, "name")
		// m7 has 9 rows; m9, m10, m11 reach the cap of 10 and tie (by name).
		wantDepth := []string{"jira:us:m10", "jira:us:m11", "jira:us:m9", "jira:us:m7", "jira:us:m8", "jira:us:m6"}
		if !slices.Equal(got[:6], wantDepth) || len(got) != 13 {
			t.Fatalf("by depth = %v", got)
		}
		if byDepth[0]["depth"].(float64) != 10 || byDepth[0]["depth_capped"] != true || byDepth[4]["depth_capped"] != false {
			t.Fatalf("capped depths: %v / %v", byDepth[0], byDepth[4])
		}
		oldest := names(collect(t, api, "/sentry_silo/mailboxes?sort=oldest&limit=3", "mailboxes"), "name")
		if oldest[0] != "jira:us:m7" || len(oldest) != 13 || oldest[12] != "github:de:g" {
			t.Fatalf("by age = %v", oldest)
		}
		if got := names(collect(t, api, "/sentry_silo/mailboxes?provider=github", "mailboxes"), "name"); !slices.Equal(got, []string{"github:de:g"}) {
			t.Fatalf("provider filter = %v", got)
		}
		if got := collect(t, api, "/sentry_silo/mailboxes?region=us&limit=2", "mailboxes"); len(got) != 12 {
			t.Fatalf("region filter = %d mailboxes", len(got))
		}
		if got := collect(t, api, "/sentry_silo/mailboxes?min_age=1h", "mailboxes"); len(got) != 0 {
			t.Fatalf("min_age filter = %v", got)
		}
		if a := do(t, api, "GET", "/sentry_silo/mailboxes?sort=depth&after="+url.QueryEscape(encodeCursor("mn", "x"))); a.status != 400 {
			t.Fatalf("a name cursor with sort=depth: %d", a.status)
		}
		one := ok(t, api, "GET", "/sentry_silo/mailboxes/jira:us:m3?limit=2")
		mb := one["mailbox"].(map[string]any)
		head := list(one, "head")
		if mb["depth"].(float64) != 4 || mb["paused"] != nil || len(head) != 2 || int64(head[0]["id"].(float64)) != int64(mb["head_id"].(float64)) {
			t.Fatalf("one mailbox = %v", one)
		}
		ok(t, api, "POST", "/sentry_silo/regions/us/pause")
		if p, _ := ok(t, api, "GET", "/sentry_silo/mailboxes/jira:us:m3")["mailbox"].(map[string]any)["paused"].(map[string]any); p["kind"] != "region" {
			t.Fatalf("a mailbox of a paused region is not shown paused")
		}
	})
}

// Pauses: idempotent, listed, resumed, with who and why, and each one
// wakes the drainer for a full scan.
func TestAPIPauses(t *testing.T) {
	forEachEngine(t, func(t *testing.T, st engine) {
		w := &wakes{}
		api := newAPI(st, w)
		first := ok(t, api, "POST", "/sentry_silo/regions/us/pause", `{"reason":"restore of us"}`)
		p := first["pause"].(map[string]any)
		if first["created"] != true || p["kind"] != "region" || p["name"] != "us" || p["paused_by"] != "127.0.0.1" || p["reason"] != "restore of us" {
			t.Fatalf("pause = %v", first)
		}
		again := ok(t, api, "POST", "/sentry_silo/regions/us/pause", `{"by":"bob"}`)
		if again["created"] != false || again["pause"].(map[string]any)["paused_by"] != "127.0.0.1" {
			t.Fatalf("pause twice = %v", again)
		}
		ok(t, api, "POST", "/sentry_silo/mailboxes/github%3Ade%3A9/pause", `{"by":"alice"}`)
		pauses := list(ok(t, api, "GET", "/sentry_silo/pauses"), "pauses")
		if len(pauses) != 2 || pauses[0]["kind"] != "region" || pauses[1]["name"] != "github:de:9" || pauses[1]["paused_by"] != "alice" {
			t.Fatalf("pauses = %v", pauses)
		}
		regions := list(ok(t, api, "GET", "/sentry_silo/regions"), "regions")
		if regions[0]["paused"] != nil || regions[1]["paused"] == nil {
			t.Fatalf("regions = %v", regions)
		}
		for _, want := range []bool{true, false} {
			if out := ok(t, api, "POST", "/sentry_silo/regions/us/resume"); out["resumed"] != want || out["kind"] != "region" {
				t.Fatalf("resume = %v, want resumed %v", out, want)
			}
		}
		if got := w.list(); len(got) != 5 || slices.ContainsFunc(got, func(s string) bool { return s != "" }) {
			t.Fatalf("wakes = %q, want a full scan per pause and resume", got)
		}
		long := strings.Repeat("x", 501)
		for _, body := range []string{`{"reason":"` + long + `"}`, `{"who":"x"}`, `[1]`, `{"by":"a"} {"by":"b"}`} {
			if a := do(t, api, "POST", "/sentry_silo/mailboxes/m/pause", body); a.status != 400 {
				t.Errorf("pause body %.40q = %d %s, want 400", body, a.status, a.raw)
			}
		}
	})
}

// Payloads, dead letters and the history: filters, pages, opening one,
// deleting one, bulk replay in id order and its repeat, bulk delete, and
// the history's replay with its 409.
func TestAPIRows(t *testing.T) {
	forEachEngine(t, func(t *testing.T, st engine) {
		ctx := context.Background()
		w := &wakes{}
		api := newAPI(st, w)
		var ps []store.NewPayload
		for i := range 9 {
			ps = append(ps, jira(fmt.Sprintf("jira:us:%d", i%3), i))
		}
		de := jira("jira:de:1", 99)
		ids9 := insert(t, st, append(ps, de)...)
		if got := ids(collect(t, api, "/sentry_silo/payloads?region=us&limit=4", "payloads")); !slices.Equal(got, ids9[:9]) {
			t.Fatalf("payloads of us = %v, want %v", got, ids9[:9])
		}
		if got := ids(collect(t, api, "/sentry_silo/payloads?mailbox=jira:de:1", "payloads")); !slices.Equal(got, ids9[9:]) {
			t.Fatalf("payloads of jira:de:1 = %v", got)
		}
		one := ok(t, api, "GET", fmt.Sprintf("/sentry_silo/payloads/%d", ids9[0]))
		if one["body"].(map[string]any)["preview"] != `{"n":0}` || one["next_attempt_at"] == nil || one["method"] != "POST" {
			t.Fatalf("payload = %v", one)
		}

		kill(t, st, "dropped_404", ids9[:9]...)
		kill(t, st, store.ReasonMaxAge, ids9[9])
		if got := ids(collect(t, api, "/sentry_silo/dead_letters?reason=dropped_404&mailbox=jira:us:1", "dead_letters")); !slices.Equal(got, []int64{ids9[1], ids9[4], ids9[7]}) {
			t.Fatalf("filtered dead letters = %v", got)
		}
		dl := ok(t, api, "GET", fmt.Sprintf("/sentry_silo/dead_letters/%d", ids9[9]))
		if dl["reason"] != "max_age" || dl["headers"].(map[string]any)["Content-Type"] == nil || dl["dead_at"] == nil {
			t.Fatalf("dead letter = %v", dl)
		}
		if out := ok(t, api, "DELETE", fmt.Sprintf("/sentry_silo/dead_letters/%d", ids9[9])); out["deleted"].(float64) != 1 {
			t.Fatalf("delete = %v", out)
		}
		// Bulk replay of us: back in id order, mailbox by mailbox.
		out := ok(t, api, "POST", "/sentry_silo/dead_letters/replay?region=us")
		if out["replayed"].(float64) != 9 || out["batches"].(float64) != 1 || out["more"] != false {
			t.Fatalf("bulk replay = %v", out)
		}
		if out := ok(t, api, "POST", "/sentry_silo/dead_letters/replay?region=us"); out["replayed"].(float64) != 0 {
			t.Fatalf("repeat = %v", out)
		}
		for m := range 3 {
			var bodies []string
			for _, p := range collect(t, api, fmt.Sprintf("/sentry_silo/payloads?mailbox=jira:us:%d", m), "payloads") {
				got := ok(t, api, "GET", fmt.Sprintf("/sentry_silo/payloads/%v", int64(p["id"].(float64))))
				bodies = append(bodies, got["body"].(map[string]any)["preview"].(string))
			}
			want := []string{fmt.Sprintf(`{"n":%d}`, m), fmt.Sprintf(`{"n":%d}`, m+3), fmt.Sprintf(`{"n":%d}`, m+6)}
			if !slices.Equal(bodies, want) {
				t.Fatalf("mailbox %d after the bulk replay: %v, want %v", m, bodies, want)
			}
		}
		if got := w.list(); !slices.ContainsFunc(got, func(s string) bool {
			return strings.Contains(s, "jira:us:0") && strings.Contains(s, "jira:us:1") && strings.Contains(s, "jira:us:2")
		}) {
			t.Fatalf("wakes = %q", got)
		}
		// Bulk delete: refused without a filter, done with one.
		fresh := insert(t, st, jira("jira:us:z", 0), jira("jira:us:z", 1))
		kill(t, st, "dropped_409", fresh...)
		if out := ok(t, api, "DELETE", "/sentry_silo/dead_letters?reason=dropped_409"); out["deleted"].(float64) != 2 {
			t.Fatalf("bulk delete = %v", out)
		}

		// The history.
		hist := insert(t, st, jira("jira:us:h", 0), jira("jira:us:h", 1))
		for i, id := range hist {
			if err := st.DeliverPayload(ctx, id, store.Delivery{Status: 200 + i, Duration: 1500 * time.Microsecond, At: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		all := collect(t, api, "/sentry_silo/delivered?limit=1", "delivered")
		if !slices.Equal(ids(all), hist) || all[0]["duration_ms"].(float64) != 1.5 || all[1]["status"].(float64) != 201 || all[0]["replayed_at"] != nil {
			t.Fatalf("delivered = %v", all)
		}
		if got := collect(t, api, "/sentry_silo/delivered?status=201", "delivered"); len(got) != 1 {
			t.Fatalf("status filter = %v", got)
		}
		rp := ok(t, api, "POST", fmt.Sprintf("/sentry_silo/delivered/%d/replay", hist[0]))
		if a := do(t, api, "POST", fmt.Sprintf("/sentry_silo/delivered/%d/replay", hist[0])); a.status != http.StatusConflict || !strings.Contains(a.raw, "again=true") {
			t.Fatalf("second replay = %d %s", a.status, a.raw)
		}
		ok(t, api, "POST", fmt.Sprintf("/sentry_silo/delivered/%d/replay?again=true", hist[0]))
		d := ok(t, api, "GET", fmt.Sprintf("/sentry_silo/delivered/%d", hist[0]))
		if d["replayed_at"] == nil || d["replayed_as"].(float64) <= rp["payload_id"].(float64) {
			t.Fatalf("marks = %v", d)
		}
		if out := ok(t, api, "POST", "/sentry_silo/delivered/replay?mailbox=jira:us:h"); out["replayed"].(float64) != 1 {
			t.Fatalf("bulk replay of the history = %v (the replayed row is skipped)", out)
		}
		if out := ok(t, api, "DELETE", "/sentry_silo/delivered?all=true"); out["deleted"].(float64) != 2 {
			t.Fatalf("delete all = %v", out)
		}
	})
}

// A bulk action past one batch: every row once, in batches of bulkBatch,
// the replays back in their mailbox in the original order; a repeat
// touches nothing.
func TestAPIBulkBatches(t *testing.T) {
	forEachEngine(t, func(t *testing.T, st engine) {
		ctx := context.Background()
		api := newAPI(st, &wakes{})
		const n = 2*bulkBatch + 1
		var ps []store.NewPayload
		for i := range n {
			ps = append(ps, jira("jira:us:bulk", i))
		}
		kill(t, st, "dropped_404", insert(t, st, ps...)...)
		out := ok(t, api, "POST", "/sentry_silo/dead_letters/replay?mailbox=jira:us:bulk")
		if out["replayed"].(float64) != n || out["batches"].(float64) != 3 || out["more"] != false {
			t.Fatalf("bulk replay = %v", out)
		}
		if out := ok(t, api, "POST", "/sentry_silo/dead_letters/replay?mailbox=jira:us:bulk"); out["replayed"].(float64) != 0 {
			t.Fatalf("repeat = %v", out)
		}
		rows, err := st.ListPayloads(ctx, store.RowFilter{Mailbox: "jira:us:bulk"}, 0, MaxPage*2)
		if err != nil || len(rows) != n {
			t.Fatalf("%d rows back in the mailbox, %v", len(rows), err)
		}
		for i, r := range rows {
			if want := fmt.Sprintf("/extensions/jira/webhook/?n=%d", i); r.Path != want {
				t.Fatalf("row %d of the mailbox is %s, want %s", i, r.Path, want)
			}
		}
		ids := make([]int64, len(rows))
		for i, r := range rows {
			ids[i] = r.ID
		}
		kill(t, st, "dropped_410", ids...)
		out = ok(t, api, "DELETE", "/sentry_silo/dead_letters?reason=dropped_410")
		if out["deleted"].(float64) != n || out["batches"].(float64) != 3 || out["more"] != false {
			t.Fatalf("bulk delete = %v", out)
		}
		if left := list(ok(t, api, "GET", "/sentry_silo/dead_letters"), "dead_letters"); len(left) != 0 {
			t.Fatalf("%d dead letters left", len(left))
		}
	})
}

// A bulk action stopped by its bounds says more, and the same request
// goes on where it stopped, keeping the order (bounds of 2 batches of 2
// rows here instead of 100 of 500).
func TestAPIBulkMore(t *testing.T) {
	forEachEngine(t, func(t *testing.T, st engine) {
		ctx := context.Background()
		api := newAPI(st, &wakes{})
		api.bulk = &bulkBounds{rows: 2, batches: 2, time: time.Hour}
		var ps []store.NewPayload
		for i := range 5 {
			ps = append(ps, jira("jira:us:more", i))
		}
		kill(t, st, "dropped_404", insert(t, st, ps...)...)
		for _, want := range []struct {
			replayed, batches int
			more              bool
		}{{4, 2, true}, {1, 1, false}, {0, 1, false}} {
			out := ok(t, api, "POST", "/sentry_silo/dead_letters/replay?mailbox=jira:us:more")
			if out["replayed"].(float64) != float64(want.replayed) || out["batches"].(float64) != float64(want.batches) || out["more"] != want.more {
				t.Fatalf("bulk replay = %v, want %+v", out, want)
			}
		}
		rows, err := st.ListPayloads(ctx, store.RowFilter{Mailbox: "jira:us:more"}, 0, 10)
		if err != nil || len(rows) != 5 {
			t.Fatalf("%d rows back, %v", len(rows), err)
		}
		for i, r := range rows {
			if want := fmt.Sprintf("/extensions/jira/webhook/?n=%d", i); r.Path != want {
				t.Fatalf("row %d is %s, want %s", i, r.Path, want)
			}
		}
		ids := make([]int64, len(rows))
		for i, r := range rows {
			ids[i] = r.ID
		}
		kill(t, st, "dropped_410", ids...)
		if out := ok(t, api, "DELETE", "/sentry_silo/dead_letters?all=true"); out["deleted"].(float64) != 4 || out["more"] != true {
			t.Fatalf("bulk delete = %v", out)
		}
		if out := ok(t, api, "DELETE", "/sentry_silo/dead_letters?all=true"); out["deleted"].(float64) != 1 || out["more"] != false {
			t.Fatalf("bulk delete, repeated = %v", out)
		}
	})
}
