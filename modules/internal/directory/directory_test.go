package directory

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fakeSource is an in-memory Source that counts queries and can be told to
// fail or to block.
type fakeSource struct {
	mu    sync.Mutex
	orgs  map[int64]Organization
	keys  map[string]string
	apps  map[int64]SentryApp
	inst  map[string]SentryAppInstallation
	integ map[int64]Integration
	oi    map[int64]OrganizationIntegration
	ident map[int64]Identity
	err   error         // returned by every query when set
	gate  chan struct{} // when set, queries wait for it to close
	calls atomic.Int64
}

func newFakeSource() *fakeSource {
	return &fakeSource{
		orgs:  map[int64]Organization{},
		keys:  map[string]string{},
		apps:  map[int64]SentryApp{},
		inst:  map[string]SentryAppInstallation{},
		integ: map[int64]Integration{},
		oi:    map[int64]OrganizationIntegration{},
		ident: map[int64]Identity{},
	}
}

func (f *fakeSource) enter() error {
	f.calls.Add(1)
	f.mu.Lock()
	gate, err := f.gate, f.err
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return err
}

func (f *fakeSource) OrganizationBySlug(ctx context.Context, slug string) (Organization, error) {
	if err := f.enter(); err != nil {
		return Organization{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range f.orgs {
		if o.Slug == slug {
			return o, nil
		}
	}
	return Organization{}, ErrNotFound
}

func (f *fakeSource) OrganizationByID(ctx context.Context, id int64) (Organization, error) {
	if err := f.enter(); err != nil {
		return Organization{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if o, ok := f.orgs[id]; ok {
		return o, nil
	}
	return Organization{}, ErrNotFound
}

func (f *fakeSource) SentryAppInstallation(ctx context.Context, uuid string) (SentryAppInstallation, error) {
	if err := f.enter(); err != nil {
		return SentryAppInstallation{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.inst[uuid]; ok {
		return v, nil
	}
	return SentryAppInstallation{}, ErrNotFound
}

func (f *fakeSource) SentryAppByID(ctx context.Context, id int64) (SentryApp, error) {
	if err := f.enter(); err != nil {
		return SentryApp{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.apps[id]; ok {
		return v, nil
	}
	return SentryApp{}, ErrNotFound
}

func (f *fakeSource) SentryAppBySlug(ctx context.Context, slug string) (SentryApp, error) {
	if err := f.enter(); err != nil {
		return SentryApp{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.apps {
		if a.Slug == slug {
			return a, nil
		}
	}
	return SentryApp{}, ErrNotFound
}

func (f *fakeSource) ProjectKeyRegion(ctx context.Context, publicKey string) (string, error) {
	if err := f.enter(); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.keys[publicKey]; ok {
		return r, nil
	}
	return "", ErrNotFound
}

func (f *fakeSource) IntegrationByExternalID(ctx context.Context, provider, externalID string) (Integration, error) {
	if err := f.enter(); err != nil {
		return Integration{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, i := range f.integ {
		if i.Provider == provider && i.ExternalID == externalID {
			return i, nil
		}
	}
	return Integration{}, ErrNotFound
}

func (f *fakeSource) IntegrationByID(ctx context.Context, id int64) (Integration, error) {
	if err := f.enter(); err != nil {
		return Integration{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.integ[id]; ok {
		return v, nil
	}
	return Integration{}, ErrNotFound
}

func (f *fakeSource) OrganizationIntegration(ctx context.Context, id int64) (OrganizationIntegration, error) {
	if err := f.enter(); err != nil {
		return OrganizationIntegration{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.oi[id]; ok {
		return v, nil
	}
	return OrganizationIntegration{}, ErrNotFound
}

func (f *fakeSource) Identity(ctx context.Context, id int64) (Identity, error) {
	if err := f.enter(); err != nil {
		return Identity{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.ident[id]; ok {
		return v, nil
	}
	return Identity{}, ErrNotFound
}

func (f *fakeSource) set(fn func(f *fakeSource)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestOrganizationLookupOrder(t *testing.T) {
	src := newFakeSource()
	src.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "us"}
	src.orgs[2] = Organization{ID: 2, Slug: "beta", Region: "de"}
	src.orgs[42] = Organization{ID: 42, Slug: "123abc", Region: "de"}
	static := []Organization{{ID: 1, Slug: "acme", Region: "static-eu"}, {ID: 7, Slug: "seven", Region: "static-us"}}

	tests := []struct {
		name      string
		src       bool
		key       string
		want      Organization
		wantErr   error
		wantCalls int64
	}{
		{"static by slug wins over source", true, "acme", static[0], nil, 0},
		{"static by id wins over source", true, "1", static[0], nil, 0},
		{"static only id", true, "7", static[1], nil, 0},
		{"source by slug", true, "beta", src.orgs[2], nil, 1},
		{"source by id", true, "2", src.orgs[2], nil, 1},
		{"digits and letters is a slug", true, "123abc", src.orgs[42], nil, 1},
		{"missing slug", true, "nope", Organization{}, ErrNotFound, 1},
		{"missing id", true, "999", Organization{}, ErrNotFound, 1},
		{"id out of range is not found, no query", true, "99999999999999999999999", Organization{}, ErrNotFound, 0},
		{"empty is not found, no query", true, "", Organization{}, ErrNotFound, 0},
		{"nil source: static still answers", false, "seven", static[1], nil, 0},
		{"nil source: others not found", false, "beta", Organization{}, ErrNotFound, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s Source
			if tc.src {
				s = src
			}
			src.calls.Store(0)
			d := New(s, Options{Organizations: static})
			got, err := d.Organization(context.Background(), tc.key)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if n := src.calls.Load(); n != tc.wantCalls {
				t.Fatalf("source calls = %d, want %d", n, tc.wantCalls)
			}
		})
	}
}

func TestCacheExpiry(t *testing.T) {
	tests := []struct {
		name string
		// rename changes the source after the first lookup.
		rename    func(*fakeSource)
		advance   time.Duration
		key       string
		wantFirst error
		wantSlug  string // after advance
		wantErr   error
		wantCalls int64
	}{
		{
			name:      "rename not seen before TTL",
			rename:    func(f *fakeSource) { f.orgs[1] = Organization{ID: 1, Slug: "acme2", Region: "us"} },
			advance:   29 * time.Second,
			key:       "1",
			wantSlug:  "acme",
			wantCalls: 1,
		},
		{
			name:      "rename seen after TTL",
			rename:    func(f *fakeSource) { f.orgs[1] = Organization{ID: 1, Slug: "acme2", Region: "us"} },
			advance:   30 * time.Second,
			key:       "1",
			wantSlug:  "acme2",
			wantCalls: 2,
		},
		{
			name:      "old slug still served until TTL",
			rename:    func(f *fakeSource) { f.orgs[1] = Organization{ID: 1, Slug: "acme2", Region: "us"} },
			advance:   10 * time.Second,
			key:       "acme",
			wantSlug:  "acme",
			wantCalls: 1,
		},
		{
			name:      "old slug gone after TTL",
			rename:    func(f *fakeSource) { f.orgs[1] = Organization{ID: 1, Slug: "acme2", Region: "us"} },
			advance:   31 * time.Second,
			key:       "acme",
			wantErr:   ErrNotFound,
			wantCalls: 2,
		},
		{
			name:      "miss cached negatively",
			rename:    func(f *fakeSource) { f.orgs[5] = Organization{ID: 5, Slug: "new", Region: "us"} },
			advance:   4 * time.Second,
			key:       "new",
			wantFirst: ErrNotFound,
			wantErr:   ErrNotFound,
			wantCalls: 1,
		},
		{
			name:      "negative entry expires",
			rename:    func(f *fakeSource) { f.orgs[5] = Organization{ID: 5, Slug: "new", Region: "us"} },
			advance:   5 * time.Second,
			key:       "new",
			wantFirst: ErrNotFound,
			wantSlug:  "new",
			wantCalls: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource()
			src.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "us"}
			clk := newFakeClock()
			d := New(src, Options{Now: clk.Now})
			ctx := context.Background()
			if _, err := d.Organization(ctx, tc.key); !errors.Is(err, tc.wantFirst) || (tc.wantFirst == nil && err != nil) {
				t.Fatalf("first lookup err = %v, want %v", err, tc.wantFirst)
			}
			src.set(tc.rename)
			clk.Advance(tc.advance)
			got, err := d.Organization(ctx, tc.key)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			} else if err != nil || got.Slug != tc.wantSlug {
				t.Fatalf("got %+v, %v; want slug %q", got, err, tc.wantSlug)
			}
			if n := src.calls.Load(); n != tc.wantCalls {
				t.Fatalf("source calls = %d, want %d", n, tc.wantCalls)
			}
		})
	}
}

func TestErrorsNotCached(t *testing.T) {
	boom := errors.New("db down")
	tests := []struct {
		name string
		call func(d *Directory) error
	}{
		{"organization", func(d *Directory) error { _, err := d.Organization(context.Background(), "acme"); return err }},
		{"integration", func(d *Directory) error {
			_, err := d.IntegrationByExternalID(context.Background(), "github", "1")
			return err
		}},
		{"project key", func(d *Directory) error { _, err := d.ProjectKeyRegion(context.Background(), "abc"); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource()
			src.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "us"}
			src.integ[1] = Integration{ID: 1, Provider: "github", ExternalID: "1"}
			src.keys["abc"] = "us"
			src.err = boom
			d := New(src, Options{Now: newFakeClock().Now})
			for i := 0; i < 3; i++ {
				if err := tc.call(d); !errors.Is(err, boom) {
					t.Fatalf("call %d: err = %v, want %v", i, err, boom)
				}
			}
			src.set(func(f *fakeSource) { f.err = nil })
			if err := tc.call(d); err != nil {
				t.Fatalf("after recovery: %v", err)
			}
			if n := src.calls.Load(); n != 4 {
				t.Fatalf("source calls = %d, want 4 (errors must not be cached)", n)
			}
		})
	}
}

func TestLookupKinds(t *testing.T) {
	src := newFakeSource()
	src.apps[3] = SentryApp{ID: 3, Slug: "my-app", OwnerID: 1}
	src.inst["u-1"] = SentryAppInstallation{UUID: "u-1", OrganizationID: 1, SentryAppID: 3}
	src.keys["pk"] = "de"
	src.integ[9] = Integration{ID: 9, Provider: "slack", ExternalID: "T1", Organizations: []OrganizationIntegration{{ID: 4, Region: "us"}}}
	src.oi[4] = OrganizationIntegration{ID: 4, IntegrationID: 9, Region: "us"}
	src.ident[8] = Identity{ID: 8, Data: []byte(`{"access_token":"x"}`)}
	d := New(src, Options{Now: newFakeClock().Now})
	ctx := context.Background()

	tests := []struct {
		name  string
		call  func() (any, error)
		want  string
		calls int64 // source calls for two lookups
	}{
		{"app by id", func() (any, error) { return d.SentryApp(ctx, "3") }, "my-app", 1},
		{"app by slug", func() (any, error) { return d.SentryApp(ctx, "my-app") }, "my-app", 1},
		{"installation", func() (any, error) { return d.SentryAppInstallation(ctx, "u-1") }, "u-1", 1},
		{"project key", func() (any, error) { return d.ProjectKeyRegion(ctx, "pk") }, "de", 1},
		{"integration by external id", func() (any, error) { return d.IntegrationByExternalID(ctx, "slack", "T1") }, "T1", 1},
		{"integration by id", func() (any, error) { return d.IntegrationByID(ctx, 9) }, "T1", 1},
		{"organization integration", func() (any, error) { return d.OrganizationIntegration(ctx, 4) }, "us", 1},
		{"identity is never cached", func() (any, error) { i, err := d.Identity(ctx, 8); return string(i.Data), err }, "access_token", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src.calls.Store(0)
			for i := 0; i < 2; i++ {
				v, err := tc.call()
				if err != nil {
					t.Fatal(err)
				}
				if s := fmt.Sprintf("%+v", v); !contains(s, tc.want) {
					t.Fatalf("got %s, want it to contain %q", s, tc.want)
				}
			}
			if n := src.calls.Load(); n != tc.calls {
				t.Fatalf("source calls = %d, want %d", n, tc.calls)
			}
		})
	}
	if _, err := d.IntegrationByExternalID(ctx, "github", "T1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("provider is part of the key: err = %v", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestSingleflight(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		wantErr error
	}{
		{"hit", "acme", nil},
		{"miss", "nope", ErrNotFound},
	}
	for _, tc := range tests {
		// In a synctest bubble, synctest.Wait returns once every caller
		// is blocked: on the gated query, or waiting for its flight.
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := newFakeSource()
				src.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "us"}
				gate := make(chan struct{})
				src.gate = gate
				d := New(src, Options{})
				const n = 100
				var wg sync.WaitGroup
				var started sync.WaitGroup
				errs := make(chan error, n)
				started.Add(n)
				for i := 0; i < n; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						started.Done()
						_, err := d.Organization(context.Background(), tc.key)
						errs <- err
					}()
				}
				started.Wait()
				// Every goroutine reaches the flight before the query ends.
				synctest.Wait()
				close(gate)
				wg.Wait()
				close(errs)
				for err := range errs {
					if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
						t.Fatalf("err = %v, want %v", err, tc.wantErr)
					}
				}
				if c := src.calls.Load(); c != 1 {
					t.Fatalf("source calls = %d, want 1", c)
				}
			})
		})
	}
}

func TestCallerCancelDoesNotFailOthers(t *testing.T) {
	src := newFakeSource()
	src.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "us"}
	gate := make(chan struct{})
	src.gate = gate
	d := New(src, Options{})

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := d.Organization(ctx, "acme"); first <- err }()
	waitForCall(t, src)
	second := make(chan error, 1)
	go func() { _, err := d.Organization(context.Background(), "acme"); second <- err }()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: err = %v", err)
	}
	close(gate)
	if err := <-second; err != nil {
		t.Fatalf("other caller failed with the first caller's cancel: %v", err)
	}
}

func TestSizeBound(t *testing.T) {
	tests := []struct {
		name       string
		maxEntries int
		lookups    int
	}{
		{"small bound", 256, 10_000},
		{"default bound", 0, 100_000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource()
			d := New(src, Options{MaxEntries: tc.maxEntries})
			for i := 0; i < tc.lookups; i++ {
				_, _ = d.Organization(context.Background(), "random-"+strconv.Itoa(i))
			}
			bound := tc.maxEntries
			if bound == 0 {
				bound = DefaultMaxEntries
			}
			if n := d.orgBySlug.cache.len(); n > bound || n < bound/2 {
				t.Fatalf("cache holds %d entries, want within (%d/2, %d]", n, bound, bound)
			}
		})
	}
}

func TestTTLCacheEvictsExpiredFirst(t *testing.T) {
	c := newTTLCache[int64, int](cacheShards, hashInt, 0) // one entry per shard
	// Fill with expired entries, then insert fresh ones: each insert
	// lands in a full shard and must find room.
	for i := int64(0); i < 1000; i++ {
		c.put(i, cacheEntry[int]{v: int(i), expires: 10}, 5)
	}
	if n := c.len(); n > cacheShards {
		t.Fatalf("len = %d > %d", n, cacheShards)
	}
	c.put(5000, cacheEntry[int]{v: 1, expires: 100}, 50)
	if _, ok := c.get(5000, 60); !ok {
		t.Fatal("fresh entry missing")
	}
	if _, ok := c.get(5000, 100); ok {
		t.Fatal("entry served at its expiry")
	}
}

func TestNegativeTTLDisabled(t *testing.T) {
	src := newFakeSource()
	d := New(src, Options{NegativeTTL: -1, TTL: -1})
	for i := 0; i < 3; i++ {
		_, _ = d.Organization(context.Background(), "nope")
	}
	if n := src.calls.Load(); n != 3 {
		t.Fatalf("source calls = %d, want 3", n)
	}
}

func warmDirectory(b *testing.B) *Directory {
	src := newFakeSource()
	for i := int64(1); i <= 1000; i++ {
		src.orgs[i] = Organization{ID: i, Slug: "org-" + strconv.FormatInt(i, 10), Region: "us"}
	}
	src.integ[1] = Integration{ID: 1, Provider: "github", ExternalID: "123", Organizations: []OrganizationIntegration{{ID: 1, Region: "us"}}}
	d := New(src, Options{TTL: time.Hour})
	ctx := context.Background()
	for i := int64(1); i <= 1000; i++ {
		if _, err := d.Organization(ctx, "org-"+strconv.FormatInt(i, 10)); err != nil {
			b.Fatal(err)
		}
		if _, err := d.OrganizationByID(ctx, i); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := d.IntegrationByExternalID(ctx, "github", "123"); err != nil {
		b.Fatal(err)
	}
	return d
}

func BenchmarkOrganizationHitSlug(b *testing.B) {
	d := warmDirectory(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Organization(ctx, "org-500"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOrganizationHitID(b *testing.B) {
	d := warmDirectory(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Organization(ctx, "500"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOrganizationHitStatic(b *testing.B) {
	d := New(nil, Options{Organizations: []Organization{{ID: 1, Slug: "acme", Region: "us"}}})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Organization(ctx, "acme"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIntegrationHit(b *testing.B) {
	d := warmDirectory(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.IntegrationByExternalID(ctx, "github", "123"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOrganizationHitParallel(b *testing.B) {
	d := warmDirectory(b)
	ctx := context.Background()
	slugs := make([]string, 1000)
	for i := range slugs {
		slugs[i] = "org-" + strconv.Itoa(i+1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := d.Organization(ctx, slugs[i%len(slugs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

func BenchmarkOrganizationHitParallelOneKey(b *testing.B) {
	d := warmDirectory(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := d.Organization(ctx, "org-7"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Static integrations answer before the cache and the database, by
// external id and by id, with the regions of their organizations: static
// ones from the config, the others from the organization lookup.
func TestStaticIntegrations(t *testing.T) {
	src := newFakeSource()
	src.orgs[3] = Organization{ID: 3, Slug: "gamma", Region: "eu"}
	src.integ[10] = Integration{ID: 10, Provider: "github", ExternalID: "555", Name: "from the database"}
	d := New(src, Options{
		Organizations: []Organization{{ID: 1, Slug: "acme", Region: "us"}, {ID: 2, Slug: "beta", Region: "de"}},
		Integrations: []Integration{
			{ID: 10, Provider: "github", ExternalID: "555", Organizations: []OrganizationIntegration{{OrganizationID: 1}, {ID: 21, OrganizationID: 2}}},
			{ID: 11, Provider: "slack", ExternalID: "T1", Organizations: []OrganizationIntegration{{ID: 31, OrganizationID: 3}, {OrganizationID: 99}}},
		},
	})
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		lookup  func() (Integration, error)
		id      int64
		regions []string
		queries int64
	}{
		{"static orgs by external id", func() (Integration, error) { return d.IntegrationByExternalID(ctx, "github", "555") }, 10, []string{"de", "us"}, 0},
		{"static orgs by id", func() (Integration, error) { return d.IntegrationByID(ctx, 10) }, 10, []string{"de", "us"}, 0},
		// Organization 3 is in the database, 99 nowhere (no region).
		{"database org", func() (Integration, error) { return d.IntegrationByExternalID(ctx, "slack", "T1") }, 11, []string{"eu"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := src.calls.Load()
			in, err := tc.lookup()
			if err != nil || in.ID != tc.id || fmt.Sprint(in.Regions()) != fmt.Sprint(tc.regions) {
				t.Fatalf("got %+v %v; want id %d, regions %v", in, err, tc.id, tc.regions)
			}
			if n := src.calls.Load() - before; n != tc.queries {
				t.Fatalf("%d database queries, want %d", n, tc.queries)
			}
			for _, oi := range in.Organizations {
				if oi.IntegrationID != tc.id {
					t.Fatalf("organization integration %+v: want integration id %d", oi, tc.id)
				}
			}
		})
	}
	// An organization integration with an id is found by id, with its
	// organization's region, without the database; one without an id, or
	// another id, goes to the database.
	for _, tc := range []struct {
		id              int64
		org, integ      int64
		region, wantErr string
	}{{21, 2, 10, "de", ""}, {31, 3, 11, "eu", ""}, {22, 0, 0, "", "not found"}} {
		before := src.calls.Load()
		oi, err := d.OrganizationIntegration(ctx, tc.id)
		if tc.wantErr != "" {
			if !errors.Is(err, ErrNotFound) || src.calls.Load() == before {
				t.Fatalf("organization integration %d: %v, want it looked up in the database and not found", tc.id, err)
			}
			continue
		}
		if err != nil || oi.ID != tc.id || oi.OrganizationID != tc.org || oi.IntegrationID != tc.integ || oi.Region != tc.region {
			t.Fatalf("organization integration %d: %+v %v", tc.id, oi, err)
		}
	}
	// The static value is not modified by the lookups that fill in
	// database regions.
	if in, _ := d.IntegrationByID(ctx, 11); in.Organizations[0].Region != "eu" || d.staticIntegByID[11].Organizations[0].Region != "" {
		t.Fatalf("static integration changed: %+v", d.staticIntegByID[11])
	}
	// A provider or external id the config does not list goes to the
	// database as before.
	if _, err := d.IntegrationByExternalID(ctx, "gitlab", "555"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unlisted integration: %v", err)
	}
	// A database that fails while a database organization is looked up
	// fails the lookup (the handler answers 503), never drops the region.
	src.mu.Lock()
	src.err = errors.New("down")
	src.mu.Unlock()
	d.Purge()
	if _, err := d.IntegrationByExternalID(ctx, "slack", "T1"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("with the database down: %v; want its error", err)
	}
}

// waitForCall polls until the source has been queried.
func waitForCall(t *testing.T, src *fakeSource) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for src.calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the source was never queried")
		}
		runtime.Gosched()
	}
}
