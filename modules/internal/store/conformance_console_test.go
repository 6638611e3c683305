package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// consoleStore is what both engines give the operator console
// (console.go), on top of engineStore.
type consoleStore interface {
	engineStore
	MailboxHeads(ctx context.Context, after string, limit int) ([]store.MailboxHead, error)
	MailboxDepths(ctx context.Context, names []string, limit int) ([]int64, error)
	ListPayloads(ctx context.Context, f store.RowFilter, after int64, limit int) ([]store.RowSummary, error)
	Payload(ctx context.Context, id int64) (store.Payload, error)
	ListDeadLetters(ctx context.Context, f store.RowFilter, after int64, limit int) ([]store.DeadLetterSummary, error)
	DeadLetter(ctx context.Context, id int64) (store.DeadLetter, error)
	DeleteDeadLetter(ctx context.Context, id int64) error
	MaxDeadLetterID(ctx context.Context) (int64, error)
	ReplayDeadLetters(ctx context.Context, f store.RowFilter, upto int64, batch int, now time.Time) (store.Replayed, error)
	DeleteDeadLetters(ctx context.Context, f store.RowFilter, upto int64, batch int) (int, error)
	DeliverPayload(ctx context.Context, id int64, d store.Delivery) error
	PurgeDelivered(ctx context.Context, before time.Time, batch int) (int, error)
	ListDelivered(ctx context.Context, f store.RowFilter, after store.DeliveredCursor, limit int) ([]store.DeliveredSummary, error)
	Delivered(ctx context.Context, id int64) (store.DeliveredPayload, error)
	ReplayDelivered(ctx context.Context, id int64, again bool, now time.Time) (int64, error)
	ReplayDeliveredRows(ctx context.Context, f store.RowFilter, before time.Time, batch int, now time.Time) (store.Replayed, error)
	DeleteDelivered(ctx context.Context, id int64) error
	DeleteDeliveredRows(ctx context.Context, f store.RowFilter, before time.Time, batch int) (int, error)
	Pause(ctx context.Context, p store.Pause) (store.Pause, bool, error)
	Resume(ctx context.Context, kind, name string) (bool, error)
	Pauses(ctx context.Context) ([]store.Pause, error)
}

var (
	_ consoleStore = (*store.Postgres)(nil)
	_ consoleStore = (*store.SQLite)(nil)
)

func TestPostgresConsole(t *testing.T) { runConsoleConformance(t, postgresEngine) }

func TestSQLiteConsole(t *testing.T) { runConsoleConformance(t, sqliteEngine) }

func runConsoleConformance(t *testing.T, e engine) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s consoleStore)
	}{
		{"Pauses", testPauses},
		{"MailboxHeads", testMailboxHeads},
		{"ListPayloads", testListPayloads},
		{"DeadLetterFilters", testDeadLetterFilters},
		{"BulkReplayDeadLetters", testBulkReplayDeadLetters},
		{"BulkDeleteDeadLetters", testBulkDeleteDeadLetters},
		{"DeliveredHistory", testDeliveredHistory},
		{"BulkReplayDelivered", testBulkReplayDelivered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := e.open(t, true)
			tc.run(t, s.(consoleStore))
		})
	}
}

func testPauses(t *testing.T, s consoleStore) {
	ctx := testCtx(t)
	at := now()
	p, created, err := s.Pause(ctx, store.Pause{Kind: store.PauseRegion, Name: "us", PausedAt: at, PausedBy: "alice", Reason: "restore"})
	if err != nil || !created || p.Name != "us" || !p.PausedAt.Equal(at) || p.PausedBy != "alice" || p.Reason != "restore" {
		t.Fatalf("Pause = %+v, %v, %v", p, created, err)
	}
	again, created, err := s.Pause(ctx, store.Pause{Kind: store.PauseRegion, Name: "us", PausedAt: at.Add(time.Hour), PausedBy: "bob"})
	if err != nil || created || !again.PausedAt.Equal(at) || again.PausedBy != "alice" {
		t.Fatalf("Pause twice = %+v, %v, %v; want the first kept", again, created, err)
	}
	if _, _, err := s.Pause(ctx, store.Pause{Kind: store.PauseMailbox, Name: "github:us:1", PausedAt: at}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Pause(ctx, store.Pause{Kind: store.PauseMailbox, Name: "a:de:1", PausedAt: at}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Pause(ctx, store.Pause{Kind: "planet", Name: "x", PausedAt: at}); err == nil {
		t.Fatal("a pause of an unknown kind was stored")
	}
	ps, err := s.Pauses(ctx)
	var got []string
	for _, p := range ps {
		got = append(got, p.Kind+" "+p.Name)
	}
	if err != nil || !slices.Equal(got, []string{"region us", "mailbox a:de:1", "mailbox github:us:1"}) {
		t.Fatalf("Pauses = %v, %v", got, err)
	}
	for _, want := range []bool{true, false} {
		if resumed, err := s.Resume(ctx, store.PauseRegion, "us"); err != nil || resumed != want {
			t.Fatalf("Resume = %v, %v; want %v", resumed, err, want)
		}
	}
	if ps, _ := s.Pauses(ctx); len(ps) != 2 {
		t.Fatalf("after resume: %+v", ps)
	}
}

func testMailboxHeads(t *testing.T, s consoleStore) {
	ctx := testCtx(t)
	var batch []store.NewPayload
	for i := range 30 {
		batch = append(batch, payload(fmt.Sprintf("github:us:%02d", i%5), fmt.Sprint(i)))
	}
	res := mustInsert(t, s, batch...)
	if err := s.ReschedulePayload(ctx, res[2].ID, 2, now().Add(time.Hour), 503, "region answered 503"); err != nil {
		t.Fatal(err)
	}
	heads, err := s.MailboxHeads(ctx, "", 3)
	if err != nil || len(heads) != 3 {
		t.Fatalf("MailboxHeads = %+v, %v", heads, err)
	}
	for i, h := range heads {
		if h.Name != fmt.Sprintf("github:us:%02d", i) || h.HeadID != res[i].ID || h.Region != "us" || h.Provider != "github" {
			t.Errorf("head %d = %+v", i, h)
		}
	}
	if h := heads[2]; h.Attempts != 2 || h.LastStatus != 503 || h.LastError != "region answered 503" || !h.ScheduleFor.After(now()) {
		t.Errorf("head in backoff = %+v", h)
	}
	rest, err := s.MailboxHeads(ctx, heads[2].Name, 100)
	if err != nil || len(rest) != 2 || rest[0].Name != "github:us:03" || rest[1].Name != "github:us:04" {
		t.Fatalf("second page = %+v, %v", rest, err)
	}
	depths, err := s.MailboxDepths(ctx, []string{"github:us:04", "nope", "github:us:00"}, 4)
	if err != nil || !slices.Equal(depths, []int64{4, 0, 4}) {
		t.Fatalf("capped depths = %v, %v", depths, err)
	}
	if depths, _ := s.MailboxDepths(ctx, []string{"github:us:01"}, 1000); !slices.Equal(depths, []int64{6}) {
		t.Fatalf("depth = %v", depths)
	}
}

func testListPayloads(t *testing.T, s consoleStore) {
	ctx := testCtx(t)
	de := payload("msteams:de:1", "xyz")
	de.Provider, de.Region = "msteams", "de"
	res := mustInsert(t, s, payload("github:us:1", "a"), de, payload("github:us:2", "bb"), payload("github:us:1", "ccc"))
	list := func(f store.RowFilter, after int64, limit int) []int64 {
		t.Helper()
		rows, err := s.ListPayloads(ctx, f, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		out := []int64{}
		for _, r := range rows {
			out = append(out, r.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    store.RowFilter
		want []int64
	}{
		{"all", store.RowFilter{}, []int64{res[0].ID, res[1].ID, res[2].ID, res[3].ID}},
		{"mailbox", store.RowFilter{Mailbox: "github:us:1"}, []int64{res[0].ID, res[3].ID}},
		{"provider", store.RowFilter{Provider: "msteams"}, []int64{res[1].ID}},
		{"region", store.RowFilter{Region: "us"}, []int64{res[0].ID, res[2].ID, res[3].ID}},
		{"until the past", store.RowFilter{Until: now().Add(-time.Hour)}, []int64{}},
		{"since the past", store.RowFilter{Since: now().Add(-time.Hour), Region: "de"}, []int64{res[1].ID}},
	} {
		if got := list(tc.f, 0, 100); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := list(store.RowFilter{}, res[1].ID, 1); !slices.Equal(got, []int64{res[2].ID}) {
		t.Errorf("page after %d: %v", res[1].ID, got)
	}
	rows, _ := s.ListPayloads(ctx, store.RowFilter{Mailbox: "github:us:1"}, res[0].ID, 10)
	if len(rows) != 1 || rows[0].BodySize != 3 || rows[0].Method != "POST" || rows[0].Path != "/extensions/github/webhook/" ||
		rows[0].ScheduleFor.IsZero() || rows[0].DestinationType != store.DestinationRegion {
		t.Errorf("summary = %+v", rows)
	}
	p, err := s.Payload(ctx, res[1].ID)
	if err != nil || string(p.Body) != "xyz" || p.Headers.Get("Content-Type") != "application/json" {
		t.Errorf("Payload = %+v, %v", p, err)
	}
	if _, err := s.Payload(ctx, 999999); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing Payload: %v", err)
	}
}

// deadLetters stores one dead letter per mailbox given, in order, with the
// reason, and returns their ids.
func deadLetters(t *testing.T, s consoleStore, reason string, at time.Time, mailboxes ...string) []int64 {
	t.Helper()
	var ps []store.NewPayload
	for i, m := range mailboxes {
		ps = append(ps, payload(m, fmt.Sprintf("%s#%d", m, i)))
	}
	var out []int64
	for _, r := range mustInsert(t, s, ps...) {
		if err := s.DeadLetterPayload(testCtx(t), r.ID, reason, 404, "", at); err != nil {
			t.Fatal(err)
		}
		out = append(out, r.ID)
	}
	return out
}

func testDeadLetterFilters(t *testing.T, s consoleStore) {
	ctx := testCtx(t)
	old := now().Add(-2 * time.Hour)
	a := deadLetters(t, s, "dropped_404", old, "github:us:1", "github:us:2")
	b := deadLetters(t, s, store.ReasonMaxAge, now(), "github:us:1")
	list := func(f store.RowFilter) []int64 {
		t.Helper()
		rows, err := s.ListDeadLetters(ctx, f, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		out := []int64{}
		for _, r := range rows {
			out = append(out, r.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    store.RowFilter
		want []int64
	}{
		{"all", store.RowFilter{}, []int64{a[0], a[1], b[0]}},
		{"mailbox", store.RowFilter{Mailbox: "github:us:1"}, []int64{a[0], b[0]}},
		{"reason", store.RowFilter{Reason: "dropped_404"}, []int64{a[0], a[1]}},
		{"mailbox and reason", store.RowFilter{Mailbox: "github:us:1", Reason: store.ReasonMaxAge}, []int64{b[0]}},
		{"dead since an hour ago", store.RowFilter{Since: now().Add(-time.Hour)}, []int64{b[0]}},
		{"dead before an hour ago", store.RowFilter{Until: now().Add(-time.Hour)}, []int64{a[0], a[1]}},
		{"other region", store.RowFilter{Region: "de"}, []int64{}},
	} {
		if got := list(tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	d, err := s.DeadLetter(ctx, a[1])
	if err != nil || d.Reason != "dropped_404" || string(d.Body) != "github:us:2#1" || !d.DeadAt.Equal(old) {
		t.Fatalf("DeadLetter = %+v, %v", d, err)
	}
	if max, err := s.MaxDeadLetterID(ctx); err != nil || max != b[0] {
		t.Fatalf("MaxDeadLetterID = %d, %v", max, err)
	}
	if err := s.DeleteDeadLetter(ctx, a[1]); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{s.DeleteDeadLetter(ctx, a[1]), func() error { _, err := s.DeadLetter(ctx, a[1]); return err }()} {
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("after delete: %v, want ErrNotFound", err)
		}
	}
}

// Bulk replay, across batches: every dead letter back in its mailbox in id
// order, the relative order of one mailbox's rows kept, keys shared within
// a batch not colliding, nothing above upto taken, and a repeat touching
// nothing.
func testBulkReplayDeadLetters(t *testing.T, s consoleStore) {
	ctx := testCtx(t)
	var boxes []string
	for i := range 23 {
		boxes = append(boxes, fmt.Sprintf("github:us:%d", i%3))
	}
	dead := deadLetters(t, s, "dropped_404", now(), boxes...)
	// Two dead letters of one mailbox with one delivery key (a
	// redelivery that died too), and one whose key a pending row holds.
	keyed := func(key string) store.NewPayload { p := payload("gitlab:us:9", key); p.DeliveryKey = key; return p }
	k := mustInsert(t, s, keyed("k1"))
	if err := s.DeadLetterPayload(ctx, k[0].ID, "dropped_404", 404, "", now()); err != nil {
		t.Fatal(err)
	}
	k2 := mustInsert(t, s, keyed("k1"), keyed("k2"))
	for _, r := range k2 {
		if err := s.DeadLetterPayload(ctx, r.ID, "dropped_404", 404, "", now()); err != nil {
			t.Fatal(err)
		}
	}
	pendingK2 := mustInsert(t, s, keyed("k2"))[0]
	upto, _ := s.MaxDeadLetterID(ctx)
	late := deadLetters(t, s, "dropped_404", now(), "github:us:0")

	total := 0
	var batches []int
	for {
		r, err := s.ReplayDeadLetters(ctx, store.RowFilter{Reason: "dropped_404"}, upto, 5, now())
		if err != nil {
			t.Fatal(err)
		}
		if r.Count == 0 {
			break
		}
		batches = append(batches, r.Count)
		total += r.Count
	}
	if total != 26 || batches[0] != 5 || batches[len(batches)-1] != 1 {
		t.Fatalf("replayed %d in batches %v, want 26 in batches of 5", total, batches)
	}
	for m := range 3 {
		name := fmt.Sprintf("github:us:%d", m)
		var bodies, want []string
		for _, p := range next(t, s, name, now(), false) {
			bodies = append(bodies, string(p.Body))
		}
		for i, b := range boxes {
			if b == name {
				want = append(want, fmt.Sprintf("%s#%d", b, i))
			}
		}
		if !slices.Equal(bodies, want) {
			t.Errorf("%s after the bulk replay: %v, want %v", name, bodies, want)
		}
	}
	rows := next(t, s, "gitlab:us:9", now(), false)
	var keys []string
	for _, r := range rows {
		keys = append(keys, string(r.Body)+"="+r.DeliveryKey)
	}
	// The pending k2 keeps its key; the replays: k1 keeps it once, k1
	// again and k2 lose it.
	if rows[0].ID != pendingK2.ID || !slices.Equal(keys, []string{"k2=k2", "k1=k1", "k1=", "k2="}) {
		t.Errorf("keyed rows after the bulk replay = %v", keys)
	}
	rest, _ := s.ListDeadLetters(ctx, store.RowFilter{}, 0, 100)
	if len(rest) != 1 || rest[0].ID != late[0] {
		t.Errorf("dead letters left = %+v, want only %d (above upto)", rest, late[0])
	}
	if r, err := s.ReplayDeadLetters(ctx, store.RowFilter{Reason: "dropped_404"}, upto, 5, now()); err != nil || r.Count != 0 {
		t.Errorf("repeat = %+v, %v; want 0 rows", r, err)
	}
	_ = dead
}

func testBulkDeleteDeadLetters(t *testing.T, s consoleStore) {
	ctx := testCtx(t)
	deadLetters(t, s, "dropped_404", now(), "github:us:1", "github:us:1", "github:us:1", "github:us:2")
	keep := deadLetters(t, s, store.ReasonMaxAge, now(), "github:us:1")
	upto, _ := s.MaxDeadLetterID(ctx)
	var got []int
	for range 3 {
		n, err := s.DeleteDeadLetters(ctx, store.RowFilter{Mailbox: "github:us:1", Reason: "dropped_404"}, upto, 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	if !slices.Equal(got, []int{2, 1, 0}) {
		t.Errorf("delete batches = %v", got)
	}
	rest, _ := s.ListDeadLetters(ctx, store.RowFilter{}, 0, 100)
	if len(rest) != 2 || rest[1].ID != keep[0] {
		t.Errorf("left = %+v", rest)
	}
}

// deliver moves the mailbox's rows into the history, in order, one
// millisecond apart from start, with status 200 (the 3rd one 202).
func deliver(t *testing.T, s consoleStore, start time.Time, ids ...int64) {
	t.Helper()
	for i, id := range ids {
		status := 200
		if i == 2 {
			status = 202
		}
		d := store.Delivery{Status: status, Duration: time.Duration(i+1) * 1500 * time.Microsecond, At: start.Add(time.Duration(i) * time.Millisecond)}
		if err := s.DeliverPayload(testCtx(t), id, d); err != nil {
			t.Fatal(err)
		}
	}
}

func testDeliveredHistory(t *testing.T, s consoleStore) {
	ctx := testCtx(t)
	p := payload("github:us:1", "first")
	p.DeliveryKey = "dk1"
	res := mustInsert(t, s, p, payload("github:us:2", "second"), payload("github:us:1", "third"))
	if err := s.ReschedulePayload(ctx, res[0].ID, 2, now(), 503, "region answered 503"); err != nil {
		t.Fatal(err)
	}
	start := now().Add(-time.Minute)
	deliver(t, s, start, res[0].ID, res[1].ID, res[2].ID)
	if err := s.DeliverPayload(ctx, res[0].ID, store.Delivery{Status: 200, At: now()}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delivering a row twice: %v, want ErrNotFound", err)
	}
	if rows := next(t, s, "github:us:1", now(), false); len(rows) != 0 {
		t.Fatalf("delivered rows still pending: %+v", rows)
	}
	all, err := s.ListDelivered(ctx, store.RowFilter{}, store.DeliveredCursor{}, 100)
	if err != nil || len(all) != 3 {
		t.Fatalf("ListDelivered = %+v, %v", all, err)
	}
	h := all[0]
	if h.ID != res[0].ID || h.Status != 200 || h.Duration != 1500*time.Microsecond || !h.At.Equal(start) ||
		h.Attempts != 3 || h.LastStatus != 503 || h.BodySize != 5 || !h.ReplayedAt.IsZero() {
		t.Errorf("history row = %+v", h)
	}
	page, _ := s.ListDelivered(ctx, store.RowFilter{}, store.DeliveredCursor{At: all[0].At, ID: all[0].ID}, 1)
	if len(page) != 1 || page[0].ID != res[1].ID {
		t.Errorf("page after the first = %+v", page)
	}
	for _, tc := range []struct {
		name string
		f    store.RowFilter
		want int
	}{
		{"mailbox", store.RowFilter{Mailbox: "github:us:1"}, 2},
		{"status", store.RowFilter{Status: 202}, 1},
		{"since", store.RowFilter{Since: start.Add(time.Millisecond)}, 2},
		{"until", store.RowFilter{Until: start.Add(time.Millisecond)}, 1},
	} {
		if got, _ := s.ListDelivered(ctx, tc.f, store.DeliveredCursor{}, 100); len(got) != tc.want {
			t.Errorf("%s: %d rows, want %d", tc.name, len(got), tc.want)
		}
	}
	d, err := s.Delivered(ctx, res[0].ID)
	if err != nil || string(d.Body) != "first" || d.DeliveryKey != "dk1" || d.Status != 200 || d.Headers.Get("Content-Type") == "" {
		t.Fatalf("Delivered = %+v, %v", d, err)
	}
	// A replay puts a copy back and marks the row; a second is refused
	// unless asked for again.
	newID, err := s.ReplayDelivered(ctx, res[0].ID, false, now())
	if err != nil {
		t.Fatal(err)
	}
	rows := next(t, s, "github:us:1", now(), false)
	if len(rows) != 1 || rows[0].ID != newID || string(rows[0].Body) != "first" || rows[0].DeliveryKey != "dk1" || rows[0].Attempts != 0 {
		t.Fatalf("after replay: %+v", rows)
	}
	if _, err := s.ReplayDelivered(ctx, res[0].ID, false, now()); !errors.Is(err, store.ErrAlreadyReplayed) {
		t.Fatalf("second replay: %v, want ErrAlreadyReplayed", err)
	}
	again, err := s.ReplayDelivered(ctx, res[0].ID, true, now())
	if err != nil || again <= newID {
		t.Fatalf("replay again: %d, %v", again, err)
	}
	if rows := next(t, s, "github:us:1", now(), false); len(rows) != 2 || rows[1].DeliveryKey != "" {
		t.Fatalf("a second copy must not take the pending copy's key: %+v", rows)
	}
	if d, _ := s.Delivered(ctx, res[0].ID); d.ReplayedAs != again || d.ReplayedAt.IsZero() {
		t.Errorf("marks after replays = %+v", d.DeliveredInfo)
	}
	if _, err := s.ReplayDelivered(ctx, 999999, false, now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("replay of a missing row: %v", err)
	}
	if err := s.DeleteDelivered(ctx, res[1].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delivered(ctx, res[1].ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	// Purge by age, in batches.
	if n, err := s.PurgeDelivered(ctx, start.Add(time.Millisecond), 10); err != nil || n != 1 {
		t.Errorf("purge = %d, %v; want 1", n, err)
	}
	if n, err := s.DeleteDeliveredRows(ctx, store.RowFilter{}, now(), 10); err != nil || n != 1 {
		t.Errorf("delete the rest = %d, %v; want 1", n, err)
	}
}

// Bulk replay of the history: copies in delivery order across batches,
// each row marked, a repeat touching nothing, rows delivered after the
// request's start left alone.
func testBulkReplayDelivered(t *testing.T, s consoleStore) {
	ctx := testCtx(t)
	var ps []store.NewPayload
	for i := range 12 {
		ps = append(ps, payload(fmt.Sprintf("github:us:%d", i%2), fmt.Sprint(i)))
	}
	res := mustInsert(t, s, ps...)
	start := now().Add(-time.Hour)
	var ids []int64
	for _, r := range res {
		ids = append(ids, r.ID)
	}
	// Delivered in reverse capture order: the replay follows delivery.
	slices.Reverse(ids)
	deliver(t, s, start, ids...)
	before := now()
	lateRow := mustInsert(t, s, payload("github:us:0", "late"))[0]
	deliver(t, s, now().Add(time.Second), lateRow.ID)

	total := 0
	for {
		r, err := s.ReplayDeliveredRows(ctx, store.RowFilter{Region: "us"}, before, 5, now())
		if err != nil {
			t.Fatal(err)
		}
		if r.Count == 0 {
			break
		}
		if r.Count > 5 || len(r.Mailboxes) == 0 {
			t.Fatalf("batch = %+v", r)
		}
		total += r.Count
	}
	if total != 12 {
		t.Fatalf("replayed %d, want 12", total)
	}
	for m := range 2 {
		var got, want []string
		for _, p := range next(t, s, fmt.Sprintf("github:us:%d", m), now(), false) {
			got = append(got, string(p.Body))
		}
		for i := 11; i >= 0; i-- {
			if i%2 == m {
				want = append(want, fmt.Sprint(i))
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("mailbox %d after the replay = %v, want delivery order %v", m, got, want)
		}
	}
	if r, _ := s.ReplayDeliveredRows(ctx, store.RowFilter{}, before, 5, now()); r.Count != 0 {
		t.Errorf("repeat replayed %d rows", r.Count)
	}
	if d, _ := s.Delivered(ctx, lateRow.ID); !d.ReplayedAt.IsZero() {
		t.Errorf("a row delivered after the request's start was replayed")
	}
	if d, _ := s.Delivered(ctx, res[0].ID); d.ReplayedAs == 0 || !bytes.Equal(d.Body, []byte("0")) {
		t.Errorf("marks = %+v", d.DeliveredInfo)
	}
}
