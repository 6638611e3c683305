package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// engine opens fresh stores of one kind for the conformance suite.
type engine struct {
	name string
	// open returns a new store on an empty database, migrated when
	// migrate is true, and an exec that runs literal SQL (fixtures) on the
	// same database through a connection of the test's own.
	open func(t testing.TB, migrate bool) (engineStore, func(sql string))
}

// thePast is Sentry's THE_PAST, the schedule_for of a new payload.
var thePast = time.Date(2016, 8, 1, 0, 0, 0, 0, time.UTC)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// now is a wall-clock instant at the stores' precision (microseconds).
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func payload(mailbox string, body string) store.NewPayload {
	return store.NewPayload{
		MailboxName: mailbox,
		Provider:    "github",
		Region:      "us",
		Method:      "POST",
		Path:        "/extensions/github/webhook/",
		Headers:     http.Header{"Content-Type": {"application/json"}},
		Body:        []byte(body),
	}
}

func mustInsert(t testing.TB, s engineStore, ps ...store.NewPayload) []store.InsertResult {
	t.Helper()
	res, err := s.InsertPayloads(testCtx(t), ps)
	if err != nil {
		t.Fatalf("InsertPayloads: %v", err)
	}
	if len(res) != len(ps) {
		t.Fatalf("InsertPayloads: %d results for %d payloads", len(res), len(ps))
	}
	return res
}

func ids(ps []store.Payload) []int64 {
	out := make([]int64, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

func next(t testing.TB, s engineStore, mailbox string, at time.Time, dueOnly bool) []store.Payload {
	t.Helper()
	ps, err := s.NextPayloads(testCtx(t), mailbox, 0, at, dueOnly, 1000)
	if err != nil {
		t.Fatalf("NextPayloads: %v", err)
	}
	return ps
}

// runConformance runs every Store method against one engine.
func runConformance(t *testing.T, e engine) {
	tests := []struct {
		name string
		run  func(t *testing.T, s engineStore, exec func(string))
	}{
		{"InsertReadBack", testInsertReadBack},
		{"InsertInvalid", testInsertInvalid},
		{"Dedup", testDedup},
		{"DedupLargeBatch", testDedupLargeBatch},
		{"FIFO", testFIFO},
		{"DueMailboxes", testDueMailboxes},
		{"DueMailboxesAtScale", testDueMailboxesAtScale},
		{"Lease", testLease},
		{"LeaseConcurrentClaim", testLeaseConcurrentClaim},
		{"DeadLetterReplayPurge", testDeadLetterReplayPurge},
		{"ReplayKeepsOrFreesKey", testReplayKey},
		{"MissingRows", testMissingRows},
		{"AdminStats", testAdminStats},
		{"RetryMailbox", testRetryMailbox},
		{"RegionAnswer", testRegionAnswer},
		{"Directory", testDirectory},
		{"WriterConcurrency", testWriterConcurrency},
		{"ConcurrentInserts", testConcurrentInserts},
		{"ConcurrentDuplicates", testConcurrentDuplicates},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, exec := e.open(t, true)
			tc.run(t, s, exec)
		})
	}
	t.Run("MigrateTwice", func(t *testing.T) {
		s, _ := e.open(t, false)
		for i := range 2 {
			if err := s.Migrate(testCtx(t)); err != nil {
				t.Fatalf("Migrate #%d: %v", i+1, err)
			}
		}
		mustInsert(t, s, payload("github:us:1", "{}"))
	})
	t.Run("DirectoryTables", func(t *testing.T) {
		s, _ := e.open(t, false)
		if err := s.Migrate(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		dir, ok := s.(interface {
			MigrateDirectory(context.Context) error
			MissingDirectoryTables(context.Context) ([]string, error)
		})
		if !ok {
			t.Fatalf("%T has no MigrateDirectory/MissingDirectoryTables", s)
		}
		// Migrate creates our tables only: a directory_dsn database keeps
		// Sentry's tables to itself, and no empty copies appear here.
		missing, err := dir.MissingDirectoryTables(testCtx(t))
		if err != nil || !slices.Equal(missing, store.DirectoryTables) {
			t.Fatalf("after Migrate, missing directory tables = %v, %v; want all of %v", missing, err, store.DirectoryTables)
		}
		if _, err := s.OrganizationBySlug(testCtx(t), "acme"); err == nil || errors.Is(err, directory.ErrNotFound) || !strings.Contains(err.Error(), "sentry_organizationmapping") {
			t.Fatalf("lookup without the table: %v; want an error naming the table", err)
		}
		for i := range 2 {
			if err := dir.MigrateDirectory(testCtx(t)); err != nil {
				t.Fatalf("MigrateDirectory #%d: %v", i+1, err)
			}
		}
		if missing, err := dir.MissingDirectoryTables(testCtx(t)); err != nil || len(missing) != 0 {
			t.Fatalf("after MigrateDirectory, missing = %v, %v", missing, err)
		}
		if _, err := s.OrganizationBySlug(testCtx(t), "acme"); !errors.Is(err, directory.ErrNotFound) {
			t.Fatalf("lookup in the empty table: %v; want ErrNotFound", err)
		}
	})
	t.Run("MigrateFromPrevious", func(t *testing.T) { testMigrateFromPrevious(t, e) })
	t.Run("MigrateConcurrently", func(t *testing.T) {
		s, _ := e.open(t, false)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Go(func() { errs[i] = s.Migrate(testCtx(t)) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("Migrate #%d: %v", i+1, err)
			}
		}
		mustInsert(t, s, payload("github:us:1", "{}"))
	})
	t.Run("Ping", func(t *testing.T) {
		s, _ := e.open(t, true)
		if err := s.Ping(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if got := s.Engine(); got != e.name {
			t.Fatalf("Engine() = %q, want %q", got, e.name)
		}
	})
}

func testInsertReadBack(t *testing.T, s engineStore, _ func(string)) {
	before := now().Add(-time.Second)
	// Not UTF-8, with a NUL, a lone continuation byte and CRLF: stored and
	// returned byte for byte.
	body := []byte{0xff, 0xfe, 0x00, 'a', 0x80, '\r', '\n', 0xc3, 0x28}
	p := store.NewPayload{
		MailboxName:   "github:us:42",
		Provider:      "github",
		Region:        "us",
		IntegrationID: 42,
		Method:        "POST",
		Path:          "/extensions/github/webhook/?a=1&b=%2F",
		Headers: http.Header{
			"X-Hub-Signature-256": {"sha256=abc"},
			"x-multi":             {"one", "two"}, // not canonical: stored canonical
			"Set-Cookie":          {"a=1", "b=2", "c=3"},
		},
		Body:        body,
		DeliveryKey: "d-1",
	}
	cb := store.NewPayload{
		MailboxName:     "slack:us:7",
		Provider:        "slack",
		Region:          "us",
		DestinationType: store.DestinationCallback,
		CallbackURL:     "https://hooks.slack.com/actions/T1/1/x",
		Method:          "POST",
		Path:            "/extensions/slack/action/",
	}
	res := mustInsert(t, s, p, cb)
	if res[0].Duplicate || res[1].Duplicate || res[0].ID <= 0 || res[1].ID <= res[0].ID {
		t.Fatalf("results = %+v", res)
	}
	got := next(t, s, "github:us:42", now(), false)
	if len(got) != 1 {
		t.Fatalf("got %d rows", len(got))
	}
	g := got[0]
	if !bytes.Equal(g.Body, body) {
		t.Errorf("body = %x, want %x", g.Body, body)
	}
	wantHeaders := http.Header{
		"X-Hub-Signature-256": {"sha256=abc"},
		"X-Multi":             {"one", "two"},
		"Set-Cookie":          {"a=1", "b=2", "c=3"},
	}
	if fmt.Sprint(g.Headers) != fmt.Sprint(wantHeaders) {
		t.Errorf("headers = %v, want %v", g.Headers, wantHeaders)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"id", g.ID, res[0].ID},
		{"mailbox", g.MailboxName, p.MailboxName},
		{"provider", g.Provider, "github"},
		{"region", g.Region, "us"},
		{"integration", g.IntegrationID, int64(42)},
		{"destination", g.DestinationType, store.DestinationRegion},
		{"method", g.Method, "POST"},
		{"path", g.Path, p.Path},
		{"delivery key", g.DeliveryKey, "d-1"},
		{"schedule_for", g.ScheduleFor, thePast},
		{"attempts", g.Attempts, 0},
		{"last status", g.LastStatus, 0},
		{"last error", g.LastError, ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if g.DateAdded.Before(before) || g.DateAdded.After(now().Add(time.Second)) {
		t.Errorf("date_added = %v, not around now", g.DateAdded)
	}
	c := next(t, s, "slack:us:7", now(), false)
	if len(c) != 1 || c[0].DestinationType != store.DestinationCallback || c[0].CallbackURL != cb.CallbackURL ||
		len(c[0].Body) != 0 || c[0].IntegrationID != 0 || c[0].DeliveryKey != "" {
		t.Errorf("callback payload = %+v", c)
	}
}

func testInsertInvalid(t *testing.T, s engineStore, _ func(string)) {
	bad := []store.NewPayload{
		{Provider: "github", Region: "us", Method: "POST", Path: "/"},
		{MailboxName: "m", Method: "POST", Path: "/"},
		{MailboxName: "m", Region: "us", Path: "/"},
		{MailboxName: "m", Region: "us", Method: "POST", Path: "/", DestinationType: "codecov"},
		{MailboxName: "m", Region: "us", Method: "POST", Path: "/", DestinationType: store.DestinationCallback},
	}
	for i, b := range bad {
		_, err := s.InsertPayloads(testCtx(t), []store.NewPayload{payload("github:us:1", "ok"), b})
		if !errors.Is(err, store.ErrInvalidPayload) || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("bad payload %d: err = %v, want ErrInvalidPayload", i, err)
		}
	}
	if got := next(t, s, "github:us:1", now(), false); len(got) != 0 {
		t.Errorf("a batch with an invalid payload stored %d rows", len(got))
	}
}

func testDedup(t *testing.T, s engineStore, _ func(string)) {
	keyed := func(mailbox, key string) store.NewPayload {
		p := payload(mailbox, key)
		p.DeliveryKey = key
		return p
	}
	first := mustInsert(t, s, keyed("github:us:1", "k1"))[0]
	if first.Duplicate {
		t.Fatal("first insert reported duplicate")
	}
	// One batch: a redelivery of k1, a new key twice, the same key in
	// another mailbox (another region's copy), and unkeyed rows.
	res := mustInsert(t, s,
		payload("github:us:1", "plain-1"),
		keyed("github:us:1", "k1"),
		keyed("github:us:1", "k2"),
		keyed("github:us:1", "k2"),
		keyed("github:de:1", "k1"),
		payload("github:us:1", "plain-2"),
	)
	if res[1] != (store.InsertResult{ID: first.ID, Duplicate: true}) {
		t.Errorf("redelivery of pending k1 = %+v, want duplicate of %d", res[1], first.ID)
	}
	if res[2].Duplicate || res[3] != (store.InsertResult{ID: res[2].ID, Duplicate: true}) {
		t.Errorf("k2 twice in a batch = %+v, %+v", res[2], res[3])
	}
	if res[4].Duplicate || res[4].ID == first.ID {
		t.Errorf("k1 in another mailbox = %+v, want a new row", res[4])
	}
	if res[0].Duplicate || res[5].Duplicate || !(first.ID < res[0].ID && res[0].ID < res[2].ID && res[2].ID < res[5].ID) {
		t.Errorf("ids do not follow the batch order: %+v", res)
	}
	if got := ids(next(t, s, "github:us:1", now(), false)); !slices.Equal(got, []int64{first.ID, res[0].ID, res[2].ID, res[5].ID}) {
		t.Errorf("stored rows = %v", got)
	}
	// Once delivered (deleted), the key may come again.
	if err := s.DeletePayload(testCtx(t), first.ID); err != nil {
		t.Fatal(err)
	}
	again := mustInsert(t, s, keyed("github:us:1", "k1"))[0]
	if again.Duplicate || again.ID <= res[5].ID {
		t.Errorf("re-insert after delivery = %+v, want a new row after %d", again, res[5].ID)
	}
}

func testFIFO(t *testing.T, s engineStore, _ func(string)) {
	ctx := testCtx(t)
	const mb = "github:us:9"
	var batch []store.NewPayload
	for i := range 5 {
		batch = append(batch, payload(mb, fmt.Sprint(i)))
	}
	r1 := mustInsert(t, s, batch...)
	r2 := mustInsert(t, s, payload(mb, "5"), payload("github:us:other", "x"), payload(mb, "6"))
	want := []int64{r1[0].ID, r1[1].ID, r1[2].ID, r1[3].ID, r1[4].ID, r2[0].ID, r2[2].ID}
	if got := ids(next(t, s, mb, now(), false)); !slices.Equal(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
	page, err := s.NextPayloads(ctx, mb, 0, now(), false, 3)
	if err != nil || !slices.Equal(ids(page), want[:3]) {
		t.Fatalf("first page = %v, %v", ids(page), err)
	}
	page, err = s.NextPayloads(ctx, mb, page[2].ID, now(), false, 3)
	if err != nil || !slices.Equal(ids(page), want[3:6]) {
		t.Fatalf("second page = %v, %v", ids(page), err)
	}
	for i, b := range []string{"0", "1", "2"} {
		p := next(t, s, mb, now(), false)[i]
		if string(p.Body) != b {
			t.Fatalf("row %d body %q", i, p.Body)
		}
	}
	// Rows in backoff are returned unless dueOnly.
	at := now()
	if err := s.ReschedulePayload(ctx, want[1], 1, at.Add(time.Hour), 503, "upstream 503"); err != nil {
		t.Fatal(err)
	}
	if got := ids(next(t, s, mb, at, true)); !slices.Equal(got, slices.Delete(slices.Clone(want), 1, 2)) {
		t.Errorf("dueOnly = %v", got)
	}
	all := next(t, s, mb, at, false)
	if !slices.Equal(ids(all), want) {
		t.Errorf("all = %v", ids(all))
	}
	r := all[1]
	if r.Attempts != 1 || !r.ScheduleFor.Equal(at.Add(time.Hour)) || r.LastStatus != 503 || r.LastError != "upstream 503" {
		t.Errorf("rescheduled row = attempts %d schedule %v status %d error %q", r.Attempts, r.ScheduleFor, r.LastStatus, r.LastError)
	}
}

func testDueMailboxes(t *testing.T, s engineStore, _ func(string)) {
	ctx := testCtx(t)
	at := now()
	skip := []string{"github", "gitlab"}
	add := func(mailbox, provider string, n int) []int64 {
		var ps []store.NewPayload
		for i := range n {
			p := payload(mailbox, fmt.Sprint(i))
			p.Provider = provider
			ps = append(ps, p)
		}
		var out []int64
		for _, r := range mustInsert(t, s, ps...) {
			out = append(out, r.ID)
		}
		return out
	}
	backoff := func(id int64) {
		if err := s.ReschedulePayload(ctx, id, 1, at.Add(10*time.Minute), 500, "boom"); err != nil {
			t.Fatal(err)
		}
	}
	// In id order of their due rows: strict-due, skip-head-backoff (its
	// 2nd row), leased-expired. Not due: strict-backoff (head in
	// backoff), skip-all-backoff, leased-live.
	strictDue := add("jira:us:1", "jira", 2)
	strictBackoff := add("jira:us:2", "jira", 3)
	backoff(strictBackoff[0])
	skipHead := add("github:us:3", "github", 3)
	backoff(skipHead[0])
	skipAll := add("gitlab:us:4", "gitlab", 1)
	backoff(skipAll[0])
	add("jira:us:5", "jira", 1)
	add("jira:us:6", "jira", 1)
	if ok, err := s.ClaimMailbox(ctx, "jira:us:5", "other", at, at.Add(time.Minute)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, err := s.ClaimMailbox(ctx, "jira:us:6", "dead", at.Add(-time.Hour), at.Add(-time.Second)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	_ = strictDue

	cases := []struct {
		name  string
		at    time.Time
		limit int
		skip  []string
		want  []string
	}{
		{"due now", at, 100, skip, []string{"jira:us:1", "github:us:3", "jira:us:6"}},
		{"limit", at, 2, skip, []string{"jira:us:1", "github:us:3"}},
		{"no skip providers", at, 100, nil, []string{"jira:us:1", "jira:us:6"}},
		{"after the backoff", at.Add(11 * time.Minute), 100, skip,
			[]string{"jira:us:1", "jira:us:2", "github:us:3", "gitlab:us:4", "jira:us:5", "jira:us:6"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.DueMailboxes(ctx, c.at, c.limit, c.skip)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("DueMailboxes = %v, want %v", got, c.want)
			}
		})
	}
	// An empty store has nothing due.
	for _, id := range ids(next(t, s, "jira:us:1", at, false)) {
		if err := s.DeletePayload(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.DueMailboxes(ctx, at, 100, skip)
	if err != nil || slices.Contains(got, "jira:us:1") {
		t.Errorf("drained mailbox still due: %v %v", got, err)
	}
}

func testLease(t *testing.T, s engineStore, _ func(string)) {
	ctx := testCtx(t)
	const mb = "github:us:1"
	at := now()
	until := at.Add(15 * time.Second)
	steps := []struct {
		name string
		do   func() (bool, error)
		want bool
	}{
		{"a claims", func() (bool, error) { return s.ClaimMailbox(ctx, mb, "a", at, until) }, true},
		{"b cannot claim a live lease", func() (bool, error) { return s.ClaimMailbox(ctx, mb, "b", at.Add(time.Second), until) }, false},
		{"a claims again", func() (bool, error) { return s.ClaimMailbox(ctx, mb, "a", at, until) }, true},
		{"a renews", func() (bool, error) { return s.RenewLease(ctx, mb, "a", until.Add(5*time.Second)) }, true},
		{"b cannot renew", func() (bool, error) { return s.RenewLease(ctx, mb, "b", until) }, false},
		{"b cannot claim before the renewed expiry", func() (bool, error) {
			return s.ClaimMailbox(ctx, mb, "b", until.Add(time.Second), until.Add(time.Minute))
		}, false},
		{"b takes over after expiry", func() (bool, error) {
			return s.ClaimMailbox(ctx, mb, "b", until.Add(6*time.Second), until.Add(time.Minute))
		}, true},
		{"a lost it", func() (bool, error) { return s.RenewLease(ctx, mb, "a", until.Add(time.Hour)) }, false},
		{"a's release leaves b's lease", func() (bool, error) {
			if err := s.ReleaseMailbox(ctx, mb, "a"); err != nil {
				return false, err
			}
			return s.ClaimMailbox(ctx, mb, "a", until.Add(7*time.Second), until.Add(time.Minute))
		}, false},
		{"after b releases, a claims", func() (bool, error) {
			if err := s.ReleaseMailbox(ctx, mb, "b"); err != nil {
				return false, err
			}
			return s.ClaimMailbox(ctx, mb, "a", until.Add(7*time.Second), until.Add(time.Minute))
		}, true},
		{"another mailbox is independent", func() (bool, error) { return s.ClaimMailbox(ctx, "github:us:2", "b", at, until) }, true},
	}
	for _, st := range steps {
		got, err := st.do()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got != st.want {
			t.Fatalf("%s: got %v, want %v", st.name, got, st.want)
		}
	}
}

func testLeaseConcurrentClaim(t *testing.T, s engineStore, _ func(string)) {
	at := now()
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			ok, err := s.ClaimMailbox(testCtx(t), "github:us:1", fmt.Sprint("owner-", i), at, at.Add(time.Minute))
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d owners claimed one mailbox", won.Load())
	}
}

func testDeadLetterReplayPurge(t *testing.T, s engineStore, _ func(string)) {
	ctx := testCtx(t)
	const mb = "github:us:1"
	body := []byte{0xff, 0x00, 0x81}
	p := payload(mb, "")
	p.Body = body
	p.Headers = http.Header{"X-A": {"1", "2"}}
	p.IntegrationID = 7
	p.DeliveryKey = "dk"
	res := mustInsert(t, s, p, payload(mb, "second"), payload(mb, "third"))
	at := now()
	if err := s.ReschedulePayload(ctx, res[0].ID, 3, at, 500, "boom"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetterPayload(ctx, res[0].ID, "dropped_404", 404, "not found", at); err != nil {
		t.Fatal(err)
	}
	if got := ids(next(t, s, mb, at, false)); !slices.Equal(got, []int64{res[1].ID, res[2].ID}) {
		t.Fatalf("pending after dead-lettering = %v", got)
	}
	dls, err := s.DeadLetters(ctx, 10, 0)
	if err != nil || len(dls) != 1 {
		t.Fatalf("DeadLetters = %v, %v", dls, err)
	}
	d := dls[0]
	if d.ID != res[0].ID || d.Reason != "dropped_404" || d.LastStatus != 404 || d.LastError != "not found" ||
		d.Attempts != 3 || !d.DeadAt.Equal(at) || !bytes.Equal(d.Body, body) || fmt.Sprint(d.Headers["X-A"]) != "[1 2]" ||
		d.IntegrationID != 7 || d.Region != "us" || d.Provider != "github" || d.MailboxName != mb || d.DeliveryKey != "dk" {
		t.Errorf("dead letter = %+v", d)
	}
	// Replay: tail of the mailbox, new id, attempts 0, due now, gone from
	// the dead letters.
	replayAt := now()
	newID, err := s.ReplayDeadLetter(ctx, d.ID, replayAt)
	if err != nil {
		t.Fatal(err)
	}
	pending := next(t, s, mb, replayAt, false)
	if got := ids(pending); !slices.Equal(got, []int64{res[1].ID, res[2].ID, newID}) || newID <= res[2].ID {
		t.Fatalf("after replay = %v (new id %d)", got, newID)
	}
	r := pending[2]
	if r.Attempts != 0 || !r.ScheduleFor.Equal(replayAt) || !r.DateAdded.Equal(replayAt) || !bytes.Equal(r.Body, body) ||
		r.DeliveryKey != "dk" || r.LastStatus != 0 {
		t.Errorf("replayed row = %+v", r)
	}
	if dls, _ := s.DeadLetters(ctx, 10, 0); len(dls) != 0 {
		t.Errorf("dead letter kept after replay: %v", dls)
	}
	if _, err := s.ReplayDeadLetter(ctx, d.ID, replayAt); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second replay: %v, want ErrNotFound", err)
	}

	// Paging and purging.
	old := now().Add(-48 * time.Hour)
	var deadIDs []int64
	for i := range 7 {
		r := mustInsert(t, s, payload("gitlab:us:2", fmt.Sprint(i)))[0]
		deadAt := old
		if i >= 5 {
			deadAt = now()
		}
		if err := s.DeadLetterPayload(ctx, r.ID, store.ReasonAttemptsExceeded, 503, "", deadAt); err != nil {
			t.Fatal(err)
		}
		deadIDs = append(deadIDs, r.ID)
	}
	var paged []int64
	for after, pages := int64(0), 0; pages < 10; pages++ {
		page, err := s.DeadLetters(ctx, 3, after)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, d := range page {
			paged = append(paged, d.ID)
		}
		after = page[len(page)-1].ID
	}
	if !slices.Equal(paged, deadIDs) {
		t.Errorf("paged dead letters = %v, want %v", paged, deadIDs)
	}
	var purged []int
	for range 5 {
		n, err := s.PurgeDeadLetters(ctx, now().Add(-24*time.Hour), 2)
		if err != nil {
			t.Fatal(err)
		}
		purged = append(purged, n)
	}
	if !slices.Equal(purged, []int{2, 2, 1, 0, 0}) {
		t.Errorf("purge batches = %v", purged)
	}
	rest, _ := s.DeadLetters(ctx, 10, 0)
	if !slices.Equal(ids(payloadsOf(rest)), deadIDs[5:]) {
		t.Errorf("kept dead letters = %v", ids(payloadsOf(rest)))
	}
}

func payloadsOf(ds []store.DeadLetter) []store.Payload {
	out := make([]store.Payload, len(ds))
	for i, d := range ds {
		out[i] = d.Payload
	}
	return out
}

func testReplayKey(t *testing.T, s engineStore, _ func(string)) {
	ctx := testCtx(t)
	p := payload("github:us:1", "x")
	p.DeliveryKey = "dk"
	first := mustInsert(t, s, p)[0]
	if err := s.DeadLetterPayload(ctx, first.ID, store.ReasonMaxAge, 0, "", now()); err != nil {
		t.Fatal(err)
	}
	// The provider redelivered meanwhile: the replay must not collide.
	redelivered := mustInsert(t, s, p)[0]
	if redelivered.Duplicate {
		t.Fatal("a dead letter must not de-duplicate a new delivery")
	}
	newID, err := s.ReplayDeadLetter(ctx, first.ID, now())
	if err != nil {
		t.Fatal(err)
	}
	rows := next(t, s, "github:us:1", now(), false)
	if !slices.Equal(ids(rows), []int64{redelivered.ID, newID}) || rows[1].DeliveryKey != "" {
		t.Errorf("rows after replay = %+v", rows)
	}
}

func testMissingRows(t *testing.T, s engineStore, _ func(string)) {
	ctx := testCtx(t)
	errs := map[string]error{
		"DeletePayload":     s.DeletePayload(ctx, 999),
		"ReschedulePayload": s.ReschedulePayload(ctx, 999, 1, now(), 500, ""),
		"DeadLetterPayload": s.DeadLetterPayload(ctx, 999, "max_age", 0, "", now()),
		"RetryMailbox":      s.RetryMailbox(ctx, "nope", now()),
	}
	_, errs["ReplayDeadLetter"] = s.ReplayDeadLetter(ctx, 999, now())
	for name, err := range errs {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s on a missing row: %v, want ErrNotFound", name, err)
		}
	}
	if err := s.ReleaseMailbox(ctx, "nope", "me"); err != nil {
		t.Errorf("ReleaseMailbox without a lease: %v", err)
	}
}

func testAdminStats(t *testing.T, s engineStore, _ func(string)) {
	ctx := testCtx(t)
	if ms, err := s.Mailboxes(ctx, now()); err != nil || len(ms) != 0 {
		t.Fatalf("empty Mailboxes = %v, %v", ms, err)
	}
	gh := mustInsert(t, s, payload("github:us:1", "a"), payload("github:us:1", "b"), payload("github:us:1", "c"))
	de := payload("msteams:de:2", "x")
	de.Provider, de.Region = "msteams", "de"
	mustInsert(t, s, de)
	at := now()
	if err := s.ReschedulePayload(ctx, gh[0].ID, 4, at.Add(time.Hour), 502, "bad gateway"); err != nil {
		t.Fatal(err)
	}
	later := at.Add(90 * time.Second)
	ms, err := s.Mailboxes(ctx, later)
	if err != nil || len(ms) != 2 {
		t.Fatalf("Mailboxes = %+v, %v", ms, err)
	}
	g, m := ms[0], ms[1]
	if g.Name != "github:us:1" || g.Region != "us" || g.Provider != "github" || g.Depth != 3 || g.HeadAttempts != 4 ||
		!g.NextAttemptAt.Equal(at.Add(time.Hour)) || g.OldestAge < 89 || g.OldestAge > 120 {
		t.Errorf("github mailbox = %+v", g)
	}
	if m.Name != "msteams:de:2" || m.Region != "de" || m.Provider != "msteams" || m.Depth != 1 || m.HeadAttempts != 0 ||
		!m.NextAttemptAt.Equal(later) {
		t.Errorf("msteams mailbox = %+v", m)
	}
	if _, err := json.Marshal(ms); err != nil {
		t.Error(err)
	}
}

func testRetryMailbox(t *testing.T, s engineStore, _ func(string)) {
	ctx := testCtx(t)
	res := mustInsert(t, s, payload("github:us:1", "a"), payload("github:us:1", "b"))
	at := now()
	for _, r := range res {
		if err := s.ReschedulePayload(ctx, r.ID, 2, at.Add(time.Hour), 500, ""); err != nil {
			t.Fatal(err)
		}
	}
	if due, _ := s.DueMailboxes(ctx, at, 10, nil); len(due) != 0 {
		t.Fatalf("due before retry: %v", due)
	}
	if err := s.RetryMailbox(ctx, "github:us:1", at); err != nil {
		t.Fatal(err)
	}
	due, err := s.DueMailboxes(ctx, at, 10, nil)
	if err != nil || !slices.Equal(due, []string{"github:us:1"}) {
		t.Fatalf("due after retry: %v %v", due, err)
	}
	for _, p := range next(t, s, "github:us:1", at, false) {
		if !p.ScheduleFor.Equal(at) || p.Attempts != 2 {
			t.Errorf("row after retry: schedule %v attempts %d", p.ScheduleFor, p.Attempts)
		}
	}
	// A due mailbox can be retried too (nothing to change).
	if err := s.RetryMailbox(ctx, "github:us:1", at); err != nil {
		t.Errorf("retry of a due mailbox: %v", err)
	}
}

// directoryFixture is literal SQL valid on both engines.
var directoryFixture = []string{
	`INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES
		(1, 'acme', 'us', 0), (2, 'globex', 'de', 0), (3, 'initech', 'us', 1), (4, 'hooli', 'de', 0)`,
	`INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES
		(10, 'github', '1234', 'acme-gh', '{"access_token":"stale","expires_at":"2020-01-01T00:00:00"}', 0),
		(11, 'slack', 'T123', 'acme-slack', '{}', 0),
		(12, 'gitlab', 'gl.example:1', 'lonely', '{"domain_name":"gl.example"}', 1)`,
	`INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status, default_auth_id) VALUES
		(100, 1, 10, 0, 500), (101, 2, 10, 0, NULL), (102, 3, 10, 0, NULL), (103, 4, 10, 1, NULL),
		(104, 99, 10, 0, NULL), (105, 1, 11, 0, NULL)`,
	`INSERT INTO sentry_identity (id, data) VALUES (500, '{"access_token":"stale","refresh_token":"r","expires":1}')`,
	`INSERT INTO sentry_sentryapp (id, slug, owner_id) VALUES (20, 'my-app', 2)`,
	`INSERT INTO sentry_sentryappinstallation (uuid, organization_id, sentry_app_id) VALUES
		('6f1c0f5e-1111-4a1a-9a1a-000000000001', 4, 20)`,
	`INSERT INTO sentry_projectkeymapping (public_key, region_name) VALUES ('0123456789abcdef0123456789abcdef', 'de')`,
	// Slack users linked to Sentry users (Seer routing): U1 of T123 is
	// user 7, a member of acme and globex (approved) and of hooli
	// (invited, not approved); U1 of another workspace is someone else.
	`INSERT INTO sentry_identityprovider (id, type, external_id) VALUES (30, 'slack', 'T123'), (31, 'slack', 'T999')`,
	`INSERT INTO sentry_identity (id, idp_id, user_id, external_id, data) VALUES (501, 30, 7, 'U1', '{}'), (502, 31, 8, 'U1', '{}')`,
	`INSERT INTO sentry_organizationmembermapping (id, organization_id, user_id, invite_status) VALUES
		(1, 1, 7, 0), (2, 2, 7, 0), (3, 4, 7, 1), (4, 1, 8, 0), (5, 3, NULL, 0)`,
}

func testDirectory(t *testing.T, s engineStore, exec func(string)) {
	for _, q := range directoryFixture {
		exec(q)
	}
	checkDirectory(t, s)
}

// checkDirectory checks every directory.Source lookup against
// directoryFixture.
func checkDirectory(t *testing.T, s engineStore) {
	ctx := testCtx(t)
	eq := func(name string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
			t.Errorf("%s = %+v, want %+v", name, got, want)
		}
	}
	o, err := s.OrganizationBySlug(ctx, "acme")
	eq("org by slug", o, directory.Organization{ID: 1, Slug: "acme", Region: "us"}, err)
	o, err = s.OrganizationByID(ctx, 2)
	eq("org by id", o, directory.Organization{ID: 2, Slug: "globex", Region: "de"}, err)
	// Inactive organizations still route (Sentry does not filter status).
	o, err = s.OrganizationBySlug(ctx, "initech")
	eq("inactive org", o, directory.Organization{ID: 3, Slug: "initech", Region: "us", Status: 1}, err)
	a, err := s.SentryAppByID(ctx, 20)
	eq("app by id", a, directory.SentryApp{ID: 20, Slug: "my-app", OwnerID: 2}, err)
	a, err = s.SentryAppBySlug(ctx, "my-app")
	eq("app by slug", a, directory.SentryApp{ID: 20, Slug: "my-app", OwnerID: 2}, err)
	inst, err := s.SentryAppInstallation(ctx, "6f1c0f5e-1111-4a1a-9a1a-000000000001")
	eq("installation", inst, directory.SentryAppInstallation{UUID: "6f1c0f5e-1111-4a1a-9a1a-000000000001", OrganizationID: 4, SentryAppID: 20}, err)
	region, err := s.ProjectKeyRegion(ctx, "0123456789abcdef0123456789abcdef")
	eq("project key", region, "de", err)

	in, err := s.IntegrationByExternalID(ctx, "github", "1234")
	if err != nil {
		t.Fatal(err)
	}
	auth := int64(500)
	wantOrgs := []directory.OrganizationIntegration{
		{ID: 100, OrganizationID: 1, IntegrationID: 10, DefaultAuthID: &auth, Region: "us"},
		{ID: 101, OrganizationID: 2, IntegrationID: 10, Region: "de"},
		{ID: 102, OrganizationID: 3, IntegrationID: 10, Region: "us"},
		{ID: 104, OrganizationID: 99, IntegrationID: 10}, // no mapping: no region
	}
	if in.ID != 10 || in.Provider != "github" || in.ExternalID != "1234" || in.Name != "acme-gh" || in.Status != 0 {
		t.Errorf("integration = %+v", in)
	}
	var meta map[string]string
	if err := json.Unmarshal(in.Metadata, &meta); err != nil || meta["access_token"] != "stale" {
		t.Errorf("metadata = %s (%v)", in.Metadata, err)
	}
	if len(in.Organizations) != len(wantOrgs) {
		t.Fatalf("organizations = %+v", in.Organizations)
	}
	for i, w := range wantOrgs {
		g := in.Organizations[i]
		if g.ID != w.ID || g.OrganizationID != w.OrganizationID || g.IntegrationID != w.IntegrationID ||
			g.Status != 0 || g.Region != w.Region || (g.DefaultAuthID == nil) != (w.DefaultAuthID == nil) ||
			(g.DefaultAuthID != nil && *g.DefaultAuthID != *w.DefaultAuthID) {
			t.Errorf("organization %d = %+v, want %+v", i, g, w)
		}
	}
	if got := in.Regions(); !slices.Equal(got, []string{"de", "us"}) {
		t.Errorf("regions = %v", got)
	}
	byID, err := s.IntegrationByID(ctx, 10)
	if err != nil || byID.ID != 10 || len(byID.Organizations) != 4 {
		t.Errorf("integration by id = %+v, %v", byID, err)
	}
	lonely, err := s.IntegrationByID(ctx, 12)
	if err != nil || lonely.Status != 1 || len(lonely.Organizations) != 0 || lonely.Regions() != nil {
		t.Errorf("integration without organizations = %+v, %v", lonely, err)
	}
	oi, err := s.OrganizationIntegration(ctx, 103) // inactive: returned by id
	eq("organization integration", fmt.Sprintf("%d %d %d %d %s", oi.ID, oi.OrganizationID, oi.IntegrationID, oi.Status, oi.Region), "103 4 10 1 de", err)
	ident, err := s.Identity(ctx, 500)
	if err != nil || ident.ID != 500 || !json.Valid(ident.Data) || !bytes.Contains(ident.Data, []byte(`"refresh_token"`)) {
		t.Errorf("identity = %s, %v", ident.Data, err)
	}

	user, err := s.LinkedUser(ctx, "slack", "T123", "U1")
	eq("linked user", user, int64(7), err)
	members, err := s.MemberOrganizations(ctx, 7, []int64{1, 2, 3, 4})
	slices.Sort(members)
	eq("member organizations", members, []int64{1, 2}, err)
	members, err = s.MemberOrganizations(ctx, 7, []int64{3})
	eq("member organizations of none", members, []int64(nil), err)

	misses := map[string]error{}
	_, misses["linked user"] = s.LinkedUser(ctx, "slack", "T123", "U2")
	_, misses["linked user of another provider"] = s.LinkedUser(ctx, "slack_staging", "T123", "U1")
	_, misses["org slug"] = s.OrganizationBySlug(ctx, "nope")
	_, misses["org id"] = s.OrganizationByID(ctx, 404)
	_, misses["app id"] = s.SentryAppByID(ctx, 404)
	_, misses["app slug"] = s.SentryAppBySlug(ctx, "nope")
	_, misses["installation"] = s.SentryAppInstallation(ctx, "nope")
	_, misses["project key"] = s.ProjectKeyRegion(ctx, "nope")
	_, misses["integration external"] = s.IntegrationByExternalID(ctx, "gitlab", "1234")
	_, misses["integration id"] = s.IntegrationByID(ctx, 404)
	_, misses["organization integration"] = s.OrganizationIntegration(ctx, 404)
	_, misses["identity"] = s.Identity(ctx, 404)
	_, misses["update metadata"] = s.UpdateIntegrationMetadata(ctx, 404, func(c json.RawMessage) (json.RawMessage, bool, error) { return c, true, nil })
	for name, err := range misses {
		if !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("%s miss: %v, want directory.ErrNotFound", name, err)
		}
	}
}

func testWriterConcurrency(t *testing.T, s engineStore, exec func(string)) {
	for _, q := range directoryFixture {
		exec(q)
	}
	type token struct {
		AccessToken string `json:"access_token"`
		ExpiresAt   string `json:"expires_at,omitempty"`
		Expires     int64  `json:"expires,omitempty"`
	}
	updaters := []struct {
		name   string
		update func(ctx context.Context, fn func(json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, error)
	}{
		{"integration metadata", func(ctx context.Context, fn func(json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, error) {
			return s.UpdateIntegrationMetadata(ctx, 10, fn)
		}},
		{"identity data", func(ctx context.Context, fn func(json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, error) {
			return s.UpdateIdentityData(ctx, 500, fn)
		}},
	}
	for _, u := range updaters {
		t.Run(u.name, func(t *testing.T) {
			var writes atomic.Int32
			results := make([]string, 20)
			var wg sync.WaitGroup
			for i := range results {
				wg.Go(func() {
					out, err := u.update(testCtx(t), func(cur json.RawMessage) (json.RawMessage, bool, error) {
						var tok token
						if err := json.Unmarshal(cur, &tok); err != nil {
							return nil, false, err
						}
						if tok.AccessToken != "stale" {
							return nil, false, nil // someone refreshed already
						}
						time.Sleep(20 * time.Millisecond) // the token endpoint
						writes.Add(1)
						return json.RawMessage(fmt.Sprintf(`{"access_token":"fresh-%d","expires_at":"2099-01-01T00:00:00"}`, i)), true, nil
					})
					if err != nil {
						t.Error(err)
						return
					}
					var tok token
					_ = json.Unmarshal(out, &tok)
					results[i] = tok.AccessToken
				})
			}
			wg.Wait()
			if writes.Load() != 1 {
				t.Fatalf("%d refreshes wrote, want exactly 1", writes.Load())
			}
			for _, r := range results {
				if r != results[0] || r == "stale" {
					t.Fatalf("callers saw different tokens: %v", results)
				}
			}
			// fn's own error comes back as is, not as unavailability.
			boom := errors.New("token endpoint said no")
			_, err := u.update(testCtx(t), func(json.RawMessage) (json.RawMessage, bool, error) { return nil, false, boom })
			if !errors.Is(err, boom) || errors.Is(err, store.ErrUnavailable) {
				t.Errorf("fn error = %v", err)
			}
			// Invalid JSON is refused.
			if _, err := u.update(testCtx(t), func(json.RawMessage) (json.RawMessage, bool, error) {
				return json.RawMessage(`{nope`), true, nil
			}); err == nil {
				t.Error("invalid JSON was written")
			}
		})
	}
	in, err := s.IntegrationByID(testCtx(t), 10)
	if err != nil || !bytes.Contains(in.Metadata, []byte("fresh-")) {
		t.Errorf("metadata after refresh = %s, %v", in.Metadata, err)
	}
}

func testConcurrentInserts(t *testing.T, s engineStore, _ func(string)) {
	// Many concurrent group commits; none may fail with a busy database.
	const writers, perWriter = 16, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				ps := []store.NewPayload{payload(fmt.Sprint("github:us:", w%4), fmt.Sprint(w, "-", i)), payload("github:de:1", "x")}
				if _, err := s.InsertPayloads(testCtx(t), ps); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	ms, err := s.Mailboxes(testCtx(t), now())
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, m := range ms {
		total += m.Depth
	}
	if total != 2*writers*perWriter {
		t.Fatalf("stored %d rows, want %d", total, 2*writers*perWriter)
	}
}

// testConcurrentDuplicates sends the same deliveries from several writers
// at once, in batches with fresh rows around them, as a provider retrying
// into two instances does: each key is stored once, every other copy is
// reported as a duplicate of that row, and the fresh rows all get in
// (on PostgreSQL this goes through the unique-violation retry).
func testConcurrentDuplicates(t *testing.T, s engineStore, _ func(string)) {
	const writers, keys = 4, 25
	keyed := func(key string) store.NewPayload {
		p := payload("github:us:1", key)
		p.DeliveryKey = key
		return p
	}
	results := make([][]store.InsertResult, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for k := range keys {
				ps := []store.NewPayload{payload("github:us:2", fmt.Sprint("fresh-", w, "-", k)), keyed(fmt.Sprint("k", k))}
				res, err := s.InsertPayloads(testCtx(t), ps)
				if err != nil {
					t.Error(err)
					return
				}
				results[w] = append(results[w], res...)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for k := range keys {
		var stored []int64
		var dupOf []int64
		for w := range writers {
			fresh, key := results[w][2*k], results[w][2*k+1]
			if fresh.Duplicate || fresh.ID == 0 {
				t.Errorf("writer %d fresh row %d = %+v", w, k, fresh)
			}
			if key.Duplicate {
				dupOf = append(dupOf, key.ID)
			} else {
				stored = append(stored, key.ID)
			}
		}
		if len(stored) != 1 {
			t.Errorf("key k%d stored %d times (%v)", k, len(stored), stored)
			continue
		}
		for _, id := range dupOf {
			if id != stored[0] {
				t.Errorf("key k%d: a duplicate points at %d, the row is %d", k, id, stored[0])
			}
		}
	}
	for mb, want := range map[string]int{"github:us:1": keys, "github:us:2": writers * keys} {
		if got := len(next(t, s, mb, now(), false)); got != want {
			t.Errorf("%s holds %d rows, want %d", mb, got, want)
		}
	}
}

// referenceDue computes DueMailboxes from every row, the slow obvious way.
func referenceDue(t *testing.T, s engineStore, at time.Time, limit int, skip []string) []string {
	ms, err := s.Mailboxes(testCtx(t), at)
	if err != nil {
		t.Fatal(err)
	}
	type due struct {
		name string
		id   int64
	}
	var dues []due
	for _, m := range ms {
		rows := next(t, s, m.Name, at, false)
		for i, r := range rows {
			if r.ScheduleFor.After(at) {
				if i == 0 && !slices.Contains(skip, r.Provider) {
					break
				}
				continue
			}
			dues = append(dues, due{m.Name, r.ID})
			break
		}
	}
	slices.SortFunc(dues, func(a, b due) int { return int(a.id - b.id) })
	var out []string
	for i := 0; i < len(dues) && i < limit; i++ {
		out = append(out, dues[i].name)
	}
	return out
}

// testDueMailboxesAtScale drives each of DueMailboxes' strategies (few
// mailboxes; many shallow mailboxes; many mailboxes behind a deep stuck
// one) and compares with referenceDue.
func testDueMailboxesAtScale(t *testing.T, s engineStore, _ func(string)) {
	ctx := testCtx(t)
	at := now()
	skip := []string{"github"}
	fill := func(prefix, provider string, mailboxes, rowsEach int) []store.InsertResult {
		var ps []store.NewPayload
		for r := range rowsEach {
			for m := range mailboxes {
				p := payload(fmt.Sprintf("%s:us:%d", prefix, m), fmt.Sprint(r))
				p.Provider = provider
				ps = append(ps, p)
			}
		}
		return mustInsert(t, s, ps...)
	}
	backoff := func(id int64) {
		if err := s.ReschedulePayload(ctx, id, 1, at.Add(time.Hour), 500, ""); err != nil {
			t.Fatal(err)
		}
	}
	check := func(name string, limit int) {
		t.Helper()
		got, err := s.DueMailboxes(ctx, at, limit, skip)
		if err != nil {
			t.Fatal(err)
		}
		if want := referenceDue(t, s, at, limit, skip); !slices.Equal(got, want) {
			t.Errorf("%s: DueMailboxes(limit %d) = %v, want %v", name, limit, got, want)
		}
	}
	// A deep strict mailbox stuck behind a backed-off head holds the
	// oldest rows, and a skip-on-failure one with its head in backoff.
	stuck := fill("jira-stuck", "jira", 1, 300)
	backoff(stuck[0].ID)
	gh := fill("github-skip", "github", 1, 3)
	backoff(gh[0].ID)
	check("few mailboxes", 1)
	check("few mailboxes", 5)
	// Then 150 shallow mailboxes, some in backoff.
	shallow := fill("gitlab", "gitlab", 150, 1)
	for i := 0; i < len(shallow); i += 7 {
		backoff(shallow[i].ID)
	}
	for _, limit := range []int{1, 2, 3, 10, 40, 1000} {
		check("behind a stuck mailbox", limit)
	}
	// Unstick it: now the window of oldest rows answers.
	if err := s.RetryMailbox(ctx, "jira-stuck:us:0", at); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 2, 3, 10, 40, 1000} {
		check("many shallow mailboxes", limit)
	}
}

// testDedupLargeBatch is testDedup at the batch sizes of a loaded group
// commit (engines may switch to a bulk path for those).
func testDedupLargeBatch(t *testing.T, s engineStore, _ func(string)) {
	keyed := func(mailbox, key string) store.NewPayload {
		p := payload(mailbox, key)
		p.DeliveryKey = key
		return p
	}
	var pendingBatch []store.NewPayload
	for i := range 100 {
		pendingBatch = append(pendingBatch, keyed(fmt.Sprint("github:us:", i%3), fmt.Sprint("p", i)))
	}
	pending := mustInsert(t, s, pendingBatch...)
	for i, r := range pending {
		if r.Duplicate || (i > 0 && r.ID <= pending[i-1].ID) {
			t.Fatalf("first batch result %d = %+v", i, r)
		}
	}
	// 300 payloads: unkeyed, new keys (some twice), and redeliveries of
	// pending rows, interleaved over mailboxes.
	var batch []store.NewPayload
	type want struct {
		dupOf int // index in batch of the first occurrence, or -1
		dupID int64
	}
	var wants []want
	firstOf := map[string]int{}
	for i := range 300 {
		mb := fmt.Sprint("github:us:", i%3)
		switch i % 4 {
		case 0:
			batch = append(batch, payload(mb, fmt.Sprint("plain", i)))
			wants = append(wants, want{dupOf: -1})
		case 1, 2:
			key := fmt.Sprint("n", i/8) // repeats inside the batch
			mb = "github:us:0"
			batch = append(batch, keyed(mb, key))
			if j, ok := firstOf[key]; ok {
				wants = append(wants, want{dupOf: j})
			} else {
				firstOf[key] = i
				wants = append(wants, want{dupOf: -1})
			}
		case 3:
			j := i % 100
			batch = append(batch, keyed(pendingBatch[j].MailboxName, pendingBatch[j].DeliveryKey))
			wants = append(wants, want{dupOf: -1, dupID: pending[j].ID})
		}
	}
	res := mustInsert(t, s, batch...)
	last := pending[len(pending)-1].ID
	for i, r := range res {
		w := wants[i]
		switch {
		case w.dupID != 0:
			if r != (store.InsertResult{ID: w.dupID, Duplicate: true}) {
				t.Errorf("redelivery %d = %+v, want duplicate of %d", i, r, w.dupID)
			}
		case w.dupOf >= 0:
			if r != (store.InsertResult{ID: res[w.dupOf].ID, Duplicate: true}) {
				t.Errorf("in-batch repeat %d = %+v, want duplicate of %+v", i, r, res[w.dupOf])
			}
		default:
			if r.Duplicate || r.ID <= last {
				t.Errorf("new payload %d = %+v, want a new id after %d", i, r, last)
			}
			last = r.ID
		}
	}
	// The stored bodies are where the ids say.
	for _, mb := range []string{"github:us:0", "github:us:1", "github:us:2"} {
		for _, p := range next(t, s, mb, now(), false) {
			for i, r := range res {
				if r.ID == p.ID && !r.Duplicate && string(p.Body) != string(batch[i].Body) {
					t.Errorf("row %d holds %q, want %q", p.ID, p.Body, batch[i].Body)
				}
			}
		}
	}
}
