package directory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

const snapshotSource = `database "sentry" on 10.0.0.5:5432`

// snapshotFixture is a source with one of every kind, and integrations
// whose metadata holds secrets.
func snapshotFixture() *fakeSource {
	src := newFakeSource()
	src.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "us"}
	src.orgs[2] = Organization{ID: 2, Slug: "beta", Region: "de"}
	src.apps[3] = SentryApp{ID: 3, Slug: "my-app", OwnerID: 1}
	src.inst["u-1"] = SentryAppInstallation{UUID: "u-1", OrganizationID: 1, SentryAppID: 3}
	src.keys["pk"] = "de"
	src.integ[9] = Integration{ID: 9, Provider: "github", ExternalID: "555", Name: "acme-gh",
		Metadata:      json.RawMessage(`{"access_token":"ghs_secret_token_1","expires_at":"2026-01-01T00:00:00Z"}`),
		Organizations: []OrganizationIntegration{{ID: 4, OrganizationID: 1, IntegrationID: 9, Region: "us"}}}
	src.integ[10] = Integration{ID: 10, Provider: "jira", ExternalID: "jira-client-key",
		Metadata:      json.RawMessage(`{"shared_secret":"jira_shared_secret_2"}`),
		Organizations: []OrganizationIntegration{{ID: 5, OrganizationID: 2, IntegrationID: 10, Region: "de"}}}
	src.integ[11] = Integration{ID: 11, Provider: "slack", ExternalID: "T1",
		Metadata:      json.RawMessage(`{"access_token":"xoxb_secret_token_4","scopes":["chat:write","assistant:write"],"installation_type":"born_as_bot"}`),
		Organizations: []OrganizationIntegration{{ID: 6, OrganizationID: 1, IntegrationID: 11, Region: "us"}}}
	src.oi[4] = OrganizationIntegration{ID: 4, OrganizationID: 1, IntegrationID: 9, Region: "us"}
	src.ident[7] = Identity{ID: 7, Data: json.RawMessage(`{"access_token":"identity_secret_3"}`)}
	return src
}

func snapshotOptions(clk *fakeClock) Options {
	return Options{Now: clk.Now, SourceName: snapshotSource, NeedsMetadata: []string{"jira", "jira_server"}, SnapshotMetadata: []string{"scopes"}}
}

// warmAll looks every fixture entry up once.
func warmAll(t *testing.T, d *Directory) {
	t.Helper()
	ctx := context.Background()
	for _, err := range []error{
		first(d.Organization(ctx, "acme")), first(d.Organization(ctx, "beta")), first(d.OrganizationByID(ctx, 1)),
		first(d.SentryApp(ctx, "my-app")), first(d.SentryApp(ctx, "3")), first(d.SentryAppInstallation(ctx, "u-1")),
		first(d.ProjectKeyRegion(ctx, "pk")), first(d.IntegrationByExternalID(ctx, "github", "555")),
		first(d.IntegrationByID(ctx, 9)), first(d.IntegrationByExternalID(ctx, "jira", "jira-client-key")),
		first(d.IntegrationByExternalID(ctx, "slack", "T1")),
		first(d.OrganizationIntegration(ctx, 4)), first(d.Identity(ctx, 7)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func first[V any](_ V, err error) error { return err }

// A Caddy restarted while the database is down routes what it knew from
// the snapshot, and the file holds no token, no signing secret and no
// identity; the integrations that capture verifies with a metadata secret
// are left out rather than served without it.
func TestSnapshotRestoresRoutingWithoutSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentry_silo", "directory-snapshot.gob")
	clk := newFakeClock()
	d := New(snapshotFixture(), snapshotOptions(clk))
	warmAll(t, d)
	if err := (Snapshot{Path: path}).Save(d); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"ghs_secret_token_1", "jira_shared_secret_2", "identity_secret_3", "jira-client-key", "xoxb_secret_token_4"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the snapshot file holds %q", secret)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}

	// A new process: the database is down.
	down := newFakeSource()
	down.err = errDown
	clk.Advance(time.Hour)
	r := New(down, snapshotOptions(clk))
	n, err := Snapshot{Path: path}.Load(r)
	if err != nil || n == 0 {
		t.Fatalf("Load = %d, %v", n, err)
	}
	ctx := context.Background()
	tests := []struct {
		name   string
		lookup func() (string, error)
		want   string // "" wants the database's error
	}{
		{"organization by slug", func() (string, error) { o, err := r.Organization(ctx, "acme"); return o.Region, err }, "us"},
		{"organization by id", func() (string, error) { o, err := r.OrganizationByID(ctx, 1); return o.Region, err }, "us"},
		{"installation", func() (string, error) {
			i, err := r.SentryAppInstallation(ctx, "u-1")
			return strconv.FormatInt(i.OrganizationID, 10), err
		}, "1"},
		{"app", func() (string, error) {
			a, err := r.SentryApp(ctx, "my-app")
			return strconv.FormatInt(a.OwnerID, 10), err
		}, "1"},
		{"project key", func() (string, error) { return r.ProjectKeyRegion(ctx, "pk") }, "de"},
		{"github integration, without its metadata", func() (string, error) {
			in, err := r.IntegrationByExternalID(ctx, "github", "555")
			if err == nil && in.Metadata != nil {
				t.Errorf("restored integration has metadata %s", in.Metadata)
			}
			return in.Regions()[0], err
		}, "us"},
		{"slack integration, with only the metadata members kept", func() (string, error) {
			in, err := r.IntegrationByExternalID(ctx, "slack", "T1")
			if err == nil && string(in.Metadata) != `{"scopes":["chat:write","assistant:write"]}` {
				t.Errorf("restored metadata %s, want the scopes only", in.Metadata)
			}
			return in.Regions()[0], err
		}, "us"},
		{"jira integration is not in the snapshot", func() (string, error) {
			_, err := r.IntegrationByExternalID(ctx, "jira", "jira-client-key")
			return "", err
		}, ""},
		{"organization integration is never restored", func() (string, error) { _, err := r.OrganizationIntegration(ctx, 4); return "", err }, ""},
		{"identity is never restored", func() (string, error) { _, err := r.Identity(ctx, 7); return "", err }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.lookup()
			if tc.want == "" {
				if !errors.Is(err, errDown) {
					t.Fatalf("err = %v, want the database's error", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// Restored entries are stale from the start: a database that answers is
// asked, and its answer wins; the bound counts from when the database gave
// the answer, not from the restart.
func TestSnapshotEntriesAreStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap.gob")
	clk := newFakeClock()
	src := snapshotFixture()
	d := New(src, snapshotOptions(clk))
	warmAll(t, d)
	if err := (Snapshot{Path: path}).Save(d); err != nil {
		t.Fatal(err)
	}
	t.Run("the database is asked", func(t *testing.T) {
		moved := snapshotFixture()
		moved.orgs[1] = Organization{ID: 1, Slug: "acme", Region: "de"}
		r := New(moved, snapshotOptions(clk))
		if _, err := (Snapshot{Path: path}).Load(r); err != nil {
			t.Fatal(err)
		}
		if o, err := r.Organization(context.Background(), "acme"); err != nil || o.Region != "de" {
			t.Fatalf("got %+v, %v; want the database's de", o, err)
		}
	})
	t.Run("past the bound nothing is restored", func(t *testing.T) {
		later := newFakeClock()
		later.Advance(DefaultTTL + DefaultStaleIfError)
		down := newFakeSource()
		down.err = errDown
		r := New(down, snapshotOptions(later))
		if n, err := (Snapshot{Path: path}).Load(r); err != nil || n != 0 {
			t.Fatalf("Load = %d, %v; want 0 entries past the bound", n, err)
		}
	})
	t.Run("another database's snapshot is refused", func(t *testing.T) {
		opts := snapshotOptions(clk)
		opts.SourceName = `database "other" on 10.0.0.6:5432`
		r := New(newFakeSource(), opts)
		if n, err := (Snapshot{Path: path}).Load(r); !errors.Is(err, ErrSnapshotSource) || n != 0 {
			t.Fatalf("Load = %d, %v; want ErrSnapshotSource", n, err)
		}
	})
	t.Run("no file is no error", func(t *testing.T) {
		r := New(newFakeSource(), snapshotOptions(clk))
		if n, err := (Snapshot{Path: filepath.Join(t.TempDir(), "none.gob")}).Load(r); err != nil || n != 0 {
			t.Fatalf("Load = %d, %v", n, err)
		}
	})
	t.Run("a damaged file is an error", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.gob")
		if err := os.WriteFile(bad, []byte("not a snapshot"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := New(newFakeSource(), snapshotOptions(clk))
		if n, err := (Snapshot{Path: bad}).Load(r); err == nil || n != 0 {
			t.Fatalf("Load = %d, %v; want an error", n, err)
		}
	})
}

// A reload's new directory takes the old one's last good answers (metadata
// included: this never leaves memory) and what it knew of the database.
func TestAdoptCarriesLastAnswersAcrossAReload(t *testing.T) {
	clk := newFakeClock()
	src := snapshotFixture()
	old := New(src, snapshotOptions(clk))
	warmAll(t, old)
	src.set(func(f *fakeSource) { f.err = errDown })
	next := New(src, snapshotOptions(clk))
	if n := next.Adopt(old); n == 0 {
		t.Fatal("Adopt took nothing")
	}
	if next.State().LastAnswer.IsZero() {
		t.Fatal("the new directory does not know the database answered")
	}
	in, err := next.IntegrationByExternalID(context.Background(), "jira", "jira-client-key")
	if err != nil || len(in.Metadata) == 0 {
		t.Fatalf("jira integration after a reload: %+v, %v; want it with its metadata", in, err)
	}
	other := snapshotOptions(clk)
	other.SourceName = "another database"
	if n := New(src, other).Adopt(old); n != 0 {
		t.Fatalf("a directory of another database adopted %d entries", n)
	}
}

// Persist writes when the database answered something since the last
// write, not otherwise, and once more when it stops.
func TestPersist(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "snap.gob")
		d := New(snapshotFixture(), Options{SourceName: snapshotSource})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var failures []error
		done := make(chan struct{})
		go func() {
			defer close(done)
			Snapshot{Path: path}.Persist(ctx, d, time.Minute, func(err error) { failures = append(failures, err) })
		}()
		restoredOrgs := func() int {
			r := New(newFakeSource(), Options{SourceName: snapshotSource})
			if _, err := (Snapshot{Path: path}).Load(r); err != nil {
				t.Fatal(err)
			}
			return r.orgBySlug.cache.len()
		}
		if _, err := d.Organization(context.Background(), "acme"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := restoredOrgs(); n != 1 {
			t.Fatalf("after one interval the snapshot holds %d organizations, want 1", n)
		}
		saved := d.State().SnapshotSaved
		time.Sleep(time.Minute)
		synctest.Wait()
		if d.State().SnapshotSaved != saved {
			t.Fatal("the snapshot was written again although nothing changed")
		}
		if _, err := d.Organization(context.Background(), "beta"); err != nil {
			t.Fatal(err)
		}
		cancel()
		<-done
		if n := restoredOrgs(); n != 2 {
			t.Fatalf("after stopping the snapshot holds %d organizations, want 2", n)
		}
		if len(failures) != 0 {
			t.Fatalf("saves failed: %v", failures)
		}
	})
}

// A failed save is reported and kept in the state; the file is left as
// it was.
func TestSnapshotSaveFailure(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "not-a-directory")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d := New(snapshotFixture(), Options{SourceName: snapshotSource})
	err := Snapshot{Path: filepath.Join(blocker, "snap.gob")}.Save(d)
	if err == nil || d.State().SnapshotError == "" {
		t.Fatalf("Save = %v, state %+v; want an error in both", err, d.State())
	}
}

// bigSnapshot writes the snapshot of a large installation: n organizations
// looked up by slug and by id, and n project keys.
func bigSnapshot(t testing.TB, n int) string {
	path := filepath.Join(t.TempDir(), "big.gob")
	clk := newFakeClock()
	d := New(nil, Options{Now: clk.Now, SourceName: snapshotSource, MaxEntries: 1 << 18})
	now := clk.Now()
	exp := now.Add(DefaultTTL).UnixNano()
	for i := 1; i <= n; i++ {
		o := Organization{ID: int64(i), Slug: "organization-" + strconv.Itoa(i), Region: "us"}
		d.orgBySlug.cache.put(o.Slug, cacheEntry[Organization]{v: o, expires: exp}, now.UnixNano())
		d.orgByID.cache.put(o.ID, cacheEntry[Organization]{v: o, expires: exp}, now.UnixNano())
		d.projectKey.cache.put(strconv.FormatInt(int64(i)*7919, 16)+"0123456789abcdef0123456789", cacheEntry[string]{v: "us", expires: exp}, now.UnixNano())
	}
	if err := (Snapshot{Path: path}).Save(d); err != nil {
		t.Fatal(err)
	}
	return path
}

// Provision loads the snapshot, and must stay fast: 100,000 organizations
// (by slug and by id) and 100,000 project keys load in well under a
// second. The bound is the behaviour, on the process's CPU time (user and
// system, GC included) so that other work on a shared machine does not
// move it: 1 s is 5 times the 0.2 s a 2-core machine takes.
func TestSnapshotLoadTime(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a large snapshot; left out under -short")
	}
	const n = 100_000
	path := bigSnapshot(t, n)
	fi, _ := os.Stat(path)
	r := New(newFakeSource(), Options{Now: newFakeClock().Now, SourceName: snapshotSource, MaxEntries: 1 << 18})
	start, cpu := time.Now(), processCPU(t)
	got, err := Snapshot{Path: path}.Load(r)
	took, used := time.Since(start), processCPU(t)-cpu
	if err != nil || got != 3*n {
		t.Fatalf("Load = %d, %v; want %d entries", got, err, 3*n)
	}
	t.Logf("loaded %d entries (%d bytes) in %s, %s of CPU", got, fi.Size(), took, used)
	if used > time.Second && !raceDetector {
		t.Fatalf("loading %d entries took %s of CPU, want well under a second", got, used)
	}
}

// processCPU is the process's user and system time so far.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkSnapshotLoad100k(b *testing.B) {
	path := bigSnapshot(b, 100_000)
	for b.Loop() {
		r := New(newFakeSource(), Options{Now: newFakeClock().Now, SourceName: snapshotSource, MaxEntries: 1 << 18})
		if _, err := (Snapshot{Path: path}).Load(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSnapshotSave100k(b *testing.B) {
	path := bigSnapshot(b, 100_000)
	r := New(newFakeSource(), Options{Now: newFakeClock().Now, SourceName: snapshotSource, MaxEntries: 1 << 18})
	if _, err := (Snapshot{Path: path}).Load(r); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := (Snapshot{Path: path}).Save(r); err != nil {
			b.Fatal(err)
		}
	}
}
