package directory

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var errDown = errors.New("db down")

// hangingSource is a fakeSource whose organization queries, while hang is
// set, block until their context ends, as a query to a database behind a
// partition does.
type hangingSource struct {
	*fakeSource
	hang atomic.Bool
}

func (h *hangingSource) OrganizationBySlug(ctx context.Context, slug string) (Organization, error) {
	if h.hang.Load() {
		h.calls.Add(1)
		<-ctx.Done()
		return Organization{}, ctx.Err()
	}
	return h.fakeSource.OrganizationBySlug(ctx, slug)
}

// The stale-if-error rules: a found answer is served past its TTL only
// when its query fails, within the bound; once the database answers
// (found, changed, not found) that answer wins, also for later failures.
func TestStaleIfError(t *testing.T) {
	tests := []struct {
		name    string
		stale   time.Duration // Options.StaleIfError
		between func(f *fakeSource)
		// between runs after the first lookup; then the clock moves by
		// advance, the source fails, and the lookup is repeated.
		advance   time.Duration
		wantSlug  string
		wantErr   error
		wantStale float64
	}{
		{name: "failure within the bound serves the last answer", advance: 31 * time.Second, wantSlug: "acme", wantStale: 1},
		{name: "default bound is 24h past expiry", advance: 30*time.Second + 24*time.Hour - time.Second, wantSlug: "acme", wantStale: 1},
		{name: "past the bound the error is returned", advance: 30*time.Second + 24*time.Hour, wantErr: errDown},
		{name: "shorter bound", stale: time.Minute, advance: 91 * time.Second, wantErr: errDown},
		{name: "disabled", stale: -1, advance: 31 * time.Second, wantErr: errDown},
		{name: "fresh entries need no failure", advance: 10 * time.Second, wantSlug: "acme"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource()
			src.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "us"}
			clk := newFakeClock()
			m := NewMetrics()
			d := New(src, Options{Now: clk.Now, StaleIfError: tc.stale, Metrics: m})
			ctx := context.Background()
			if _, err := d.Organization(ctx, "acme"); err != nil {
				t.Fatal(err)
			}
			clk.Advance(tc.advance)
			src.set(func(f *fakeSource) { f.err = errDown })
			got, err := d.Organization(ctx, "acme")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			} else if err != nil || got.Slug != tc.wantSlug || got.Region != "us" {
				t.Fatalf("got %+v, %v; want %s in us", got, err, tc.wantSlug)
			}
			if n := testutil.ToFloat64(m.StaleAnswers.WithLabelValues(kindOrganization)); n != tc.wantStale {
				t.Fatalf("stale answers metric = %v, want %v", n, tc.wantStale)
			}
			if n := d.State().StaleAnswers; float64(n) != tc.wantStale {
				t.Fatalf("State().StaleAnswers = %d, want %v", n, tc.wantStale)
			}
		})
	}
}

// Whatever the database answered last is what a failure falls back to: a
// change is served, a removal is not served any more.
func TestStaleNeverOutlivesAnAnswer(t *testing.T) {
	tests := []struct {
		name     string
		change   func(f *fakeSource)
		wantSlug string
		wantErr  error
	}{
		{"moved region is served", func(f *fakeSource) { f.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "de"} }, "de", nil},
		{"removed mapping is not served", func(f *fakeSource) { delete(f.orgs, 1) }, "", errDown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource()
			src.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "us"}
			clk := newFakeClock()
			d := New(src, Options{Now: clk.Now})
			ctx := context.Background()
			if _, err := d.Organization(ctx, "acme"); err != nil {
				t.Fatal(err)
			}
			// The database changes and answers once more after the TTL...
			src.set(tc.change)
			clk.Advance(31 * time.Second)
			_, _ = d.Organization(ctx, "acme")
			// ...then fails, past the negative TTL and the TTL.
			src.set(func(f *fakeSource) { f.err = errDown })
			clk.Advance(31 * time.Second)
			got, err := d.Organization(ctx, "acme")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %+v, %v; want %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.Region != tc.wantSlug {
				t.Fatalf("got %+v, %v; want region %s", got, err, tc.wantSlug)
			}
		})
	}
}

// Every kind that routes answers stale; the credential proxy's
// organization-integration lookup never does.
func TestStaleKinds(t *testing.T) {
	src := newFakeSource()
	src.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "us"}
	src.apps[3] = SentryApp{ID: 3, Slug: "my-app", OwnerID: 1}
	src.inst["u-1"] = SentryAppInstallation{UUID: "u-1", OrganizationID: 1, SentryAppID: 3}
	src.keys["pk"] = "de"
	src.integ[9] = Integration{ID: 9, Provider: "slack", ExternalID: "T1", Organizations: []OrganizationIntegration{{ID: 4, Region: "us"}}}
	src.oi[4] = OrganizationIntegration{ID: 4, OrganizationID: 1, IntegrationID: 9, Region: "us"}
	ctx := context.Background()
	lookups := []struct {
		name      string
		call      func(d *Directory) error
		wantStale bool
	}{
		{"organization by slug", func(d *Directory) error { _, err := d.Organization(ctx, "acme"); return err }, true},
		{"organization by id", func(d *Directory) error { _, err := d.OrganizationByID(ctx, 1); return err }, true},
		{"installation", func(d *Directory) error { _, err := d.SentryAppInstallation(ctx, "u-1"); return err }, true},
		{"app by id", func(d *Directory) error { _, err := d.SentryApp(ctx, "3"); return err }, true},
		{"app by slug", func(d *Directory) error { _, err := d.SentryApp(ctx, "my-app"); return err }, true},
		{"project key", func(d *Directory) error { _, err := d.ProjectKeyRegion(ctx, "pk"); return err }, true},
		{"integration by external id", func(d *Directory) error { _, err := d.IntegrationByExternalID(ctx, "slack", "T1"); return err }, true},
		{"integration by id", func(d *Directory) error { _, err := d.IntegrationByID(ctx, 9); return err }, true},
		{"organization integration", func(d *Directory) error { _, err := d.OrganizationIntegration(ctx, 4); return err }, false},
		{"identity", func(d *Directory) error { _, err := d.Identity(ctx, 1); return err }, false},
	}
	for _, tc := range lookups {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeSource()
			s.orgs, s.apps, s.inst, s.keys, s.integ, s.oi = src.orgs, src.apps, src.inst, src.keys, src.integ, src.oi
			s.ident[1] = Identity{ID: 1}
			clk := newFakeClock()
			d := New(s, Options{Now: clk.Now})
			if err := tc.call(d); err != nil {
				t.Fatal(err)
			}
			clk.Advance(time.Hour)
			s.set(func(f *fakeSource) { f.err = errDown })
			err := tc.call(d)
			if tc.wantStale && err != nil {
				t.Fatalf("want the last good answer, got %v", err)
			}
			if !tc.wantStale && !errors.Is(err, errDown) {
				t.Fatalf("err = %v, want the database's error (never stale)", err)
			}
		})
	}
}

// A query that hangs (a partition) is cut by the query timeout and the
// last answer served; right after that failure a caller with a last answer
// takes it at once, after failingRetry it waits at most failingWait for a
// new query (and a wait without an answer counts as a failure), and the
// first answer after the database is back replaces it.
func TestStaleWhenTheDatabaseHangs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &hangingSource{fakeSource: newFakeSource()}
		src.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "us"}
		d := New(src, Options{TTL: time.Second})
		ctx := context.Background()
		if _, err := d.Organization(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // past the TTL
		src.hang.Store(true)

		start := time.Now()
		got, err := d.Organization(ctx, "acme")
		if err != nil || got.Region != "us" {
			t.Fatalf("first lookup while hanging: %+v, %v", got, err)
		}
		if waited := time.Since(start); waited != DefaultQueryTimeout {
			t.Fatalf("first lookup waited %s, want the query timeout %s", waited, DefaultQueryTimeout)
		}
		if !d.State().Failing {
			t.Fatal("State().Failing is false after a timed-out query")
		}
		for _, tc := range []struct {
			name  string
			after time.Duration
			want  time.Duration
		}{
			{"right after the failure", 0, 0},
			{"after failingRetry", failingRetry, failingWait},
			{"right after a wait that got no answer", 0, 0},
			{"failingRetry after that wait", failingRetry, failingWait},
		} {
			// The fake clock of synctest: the retry interval passing
			// is the behaviour under test, and no wall time is spent.
			time.Sleep(tc.after)
			start = time.Now()
			if got, err := d.Organization(ctx, "acme"); err != nil || got.Region != "us" {
				t.Fatalf("%s: %+v, %v", tc.name, got, err)
			}
			if waited := time.Since(start); waited != tc.want {
				t.Fatalf("%s: the lookup waited %s, want %s", tc.name, waited, tc.want)
			}
		}
		// The database comes back and the mapping changed: the query
		// still running is cut at its timeout, and after failingRetry
		// the next lookup asks again and gets the answer.
		src.set(func(f *fakeSource) { f.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "de"} })
		src.hang.Store(false)
		time.Sleep(DefaultQueryTimeout + failingRetry) // fake time: the timeout and the retry interval elapse
		synctest.Wait()
		if got, err := d.Organization(ctx, "acme"); err != nil || got.Region != "de" {
			t.Fatalf("after recovery: %+v, %v; want the new region de", got, err)
		}
		if d.State().Failing {
			t.Fatal("State().Failing still set after an answer")
		}
	})
}

// A failing database is not asked once per request: after a failure, a
// key with a last good answer is served it without a query for
// failingRetry, then the next lookup asks again. A key without one is
// asked every time (it has nothing else to answer).
func TestFailingDatabaseIsAskedOncePerRetry(t *testing.T) {
	src := newFakeSource()
	src.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "us"}
	clk := newFakeClock()
	d := New(src, Options{Now: clk.Now})
	ctx := context.Background()
	if _, err := d.Organization(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute) // past the TTL
	src.set(func(f *fakeSource) { f.err = errDown })
	base := src.calls.Load()
	steps := []struct {
		advance   time.Duration
		lookups   int
		wantCalls int64 // queries so far, since the failure began
	}{
		{0, 100, 1},
		{failingRetry - time.Millisecond, 100, 1},
		{time.Millisecond, 100, 2},
		{failingRetry / 2, 100, 2},
	}
	for i, st := range steps {
		clk.Advance(st.advance)
		for range st.lookups {
			if o, err := d.Organization(ctx, "acme"); err != nil || o.Region != "us" {
				t.Fatalf("step %d: %+v, %v; want the last good answer", i, o, err)
			}
		}
		if got := src.calls.Load() - base; got != st.wantCalls {
			t.Fatalf("step %d: the failing database was asked %d times, want %d", i, got, st.wantCalls)
		}
	}
	if n := d.State().StaleAnswers; n != 400 {
		t.Fatalf("StaleAnswers = %d, want every lookup counted (400)", n)
	}
	base = src.calls.Load()
	for range 3 {
		if _, err := d.Organization(ctx, "never-seen"); !errors.Is(err, errDown) {
			t.Fatalf("unknown key: %v, want %v", err, errDown)
		}
	}
	if got := src.calls.Load() - base; got != 3 {
		t.Fatalf("an unknown key was asked %d times in 3 lookups, want 3", got)
	}
}

// brokenKeysSource fails every project key query, as a missing or broken
// sentry_projectkeymapping table does, and answers everything else.
type brokenKeysSource struct{ *fakeSource }

func (b brokenKeysSource) ProjectKeyRegion(context.Context, string) (string, error) {
	return "", errDown
}

// One kind of lookup failing (one broken table) does not make the others
// answer stale: an organization that moved is seen at once, however often
// the project keys fail, and is not counted as a stale answer.
func TestFailingKindDoesNotHoldOthersStale(t *testing.T) {
	src := newFakeSource()
	src.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "us"}
	src.keys["pk"] = "de"
	clk := newFakeClock()
	d := New(brokenKeysSource{src}, Options{Now: clk.Now})
	ctx := context.Background()
	if _, err := d.Organization(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	src.set(func(f *fakeSource) { f.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "de"} })
	clk.Advance(time.Minute) // past the TTL
	if _, err := d.ProjectKeyRegion(ctx, "pk"); !errors.Is(err, errDown) {
		t.Fatalf("project key: %v, want %v", err, errDown)
	}
	o, err := d.Organization(ctx, "acme")
	if err != nil || o.Region != "de" {
		t.Fatalf("organization after a project key failure: %+v, %v; want the database's de", o, err)
	}
	if n := d.State().StaleAnswers; n != 0 {
		t.Fatalf("%d stale answers, want none: the organizations' database answered", n)
	}
}

// OnFailing hears when the database starts failing and when it answers
// again, once each, however many lookups fail in between.
func TestOnFailingReportsTransitions(t *testing.T) {
	src := newFakeSource()
	src.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "us"}
	clk := newFakeClock()
	var events []string
	d := New(src, Options{Now: clk.Now, OnFailing: func(failing bool, err error) {
		events = append(events, fmt.Sprint(failing, " ", err))
	}})
	ctx := context.Background()
	steps := []struct {
		err  error
		want []string
	}{
		{nil, nil},
		{errDown, []string{"true db down"}},
		{errDown, []string{"true db down"}},
		{nil, []string{"true db down", "false <nil>"}},
		{nil, []string{"true db down", "false <nil>"}},
	}
	for i, st := range steps {
		src.set(func(f *fakeSource) { f.err = st.err })
		for range 10 {
			clk.Advance(time.Minute) // past the TTL and failingRetry: every lookup asks
			_, _ = d.Organization(ctx, "acme")
		}
		if fmt.Sprint(events) != fmt.Sprint(st.want) {
			t.Fatalf("step %d: events %q, want %q", i, events, st.want)
		}
	}
}

// A database that fails one kind and answers the others flips between
// failing and answering on every request: it is reported at most once a
// minute (reportEvery), its end only after a reported failure.
func TestOnFailingFlappingIsReportedOncePerMinute(t *testing.T) {
	src := newFakeSource()
	src.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "us"}
	clk := newFakeClock()
	var events []string
	d := New(brokenKeysSource{src}, Options{Now: clk.Now, TTL: -1, OnFailing: func(failing bool, err error) {
		events = append(events, fmt.Sprint(failing))
	}})
	ctx := context.Background()
	for range 100 {
		clk.Advance(100 * time.Millisecond) // 10 s in all
		_, _ = d.ProjectKeyRegion(ctx, "pk")
		_, _ = d.Organization(ctx, "acme")
	}
	if want := "[true false]"; fmt.Sprint(events) != want {
		t.Fatalf("events %v within 10 s of flapping, want %s", events, want)
	}
	clk.Advance(reportEvery)
	_, _ = d.ProjectKeyRegion(ctx, "pk")
	if want := "[true false true]"; fmt.Sprint(events) != want {
		t.Fatalf("events %v a minute later, want %s", events, want)
	}
}

// An unknown key while the database is down gets the database's error,
// and the state says when and why.
func TestStaleUnknownKeyGetsTheError(t *testing.T) {
	clk := newFakeClock()
	src := newFakeSource()
	src.err = errDown
	d := New(src, Options{Now: clk.Now})
	if _, err := d.Organization(context.Background(), "never-seen"); !errors.Is(err, errDown) {
		t.Fatalf("err = %v, want %v", err, errDown)
	}
	st := d.State()
	if !st.Failing || !st.LastError.Equal(clk.Now()) || st.LastErrorMessage != "db down" || !st.LastAnswer.IsZero() {
		t.Fatalf("state = %+v", st)
	}
}

// Kept past their TTL, found entries still count against MaxEntries: an
// outage after a scan of many organizations holds no more than the bound.
func TestStaleEntriesBounded(t *testing.T) {
	src := newFakeSource()
	for i := int64(1); i <= 4096; i++ {
		src.orgs[i] = Organization{ID: i, Slug: "org-" + strconv.FormatInt(i, 10), Region: "us"}
	}
	clk := newFakeClock()
	const bound = 1024
	d := New(src, Options{Now: clk.Now, MaxEntries: bound})
	for i := 1; i <= 4096; i++ {
		_, _ = d.Organization(context.Background(), "org-"+strconv.Itoa(i))
		clk.Advance(time.Second) // the earlier ones expire on the way
	}
	if n := d.orgBySlug.cache.len(); n > bound {
		t.Fatalf("cache holds %d entries, bound %d", n, bound)
	}
	// The newest are kept: the last one answers a failure.
	src.set(func(f *fakeSource) { f.err = errDown })
	clk.Advance(time.Minute)
	if _, err := d.Organization(context.Background(), "org-4096"); err != nil {
		t.Fatalf("newest entry not kept for stale-if-error: %v", err)
	}
}

// The metric is registered once per registry and shared by every
// directory (configs come and go, the counter keeps counting).
func TestMetricsRegisterTwice(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewRegistry()
	m.Register(reg)
	m.Register(reg)
	m.Register(nil)
	New(newFakeSource(), Options{Metrics: m})
	if n := testutil.CollectAndCount(m.StaleAnswers); n != 5 {
		t.Fatalf("%d stale-answer series, want one per kind (5)", n)
	}
}
