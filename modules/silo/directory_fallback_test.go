package silo

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
)

// The Caddyfile options, their JSON, and what they resolve to.
func TestDirectoryFallbackOptions(t *testing.T) {
	tests := []struct {
		name      string
		lines     string
		wantJSON  string // the options' part of the adapted JSON
		wantStale time.Duration
		wantFile  string // "default" is DefaultDirectorySnapshotPath
		wantErr   string
	}{
		{name: "defaults", wantJSON: ``, wantStale: 24 * time.Hour, wantFile: "default"},
		{name: "shorter bound", lines: "directory_stale_if_error 2h", wantJSON: `"directory_stale_if_error":7200000000000`, wantStale: 2 * time.Hour, wantFile: "default"},
		{name: "own file", lines: "directory_snapshot /var/lib/silo/snap.gob", wantJSON: `"directory_snapshot":"/var/lib/silo/snap.gob"`, wantStale: 24 * time.Hour, wantFile: "/var/lib/silo/snap.gob"},
		{name: "file off", lines: "directory_snapshot off", wantJSON: `"directory_snapshot":"off"`, wantStale: 24 * time.Hour},
		{name: "stale off turns the file off", lines: "directory_stale_if_error off", wantJSON: `"directory_stale_if_error":0`},
		{name: "0 is off", lines: "directory_stale_if_error 0", wantJSON: `"directory_stale_if_error":0`},
		{name: "a file that nothing would be served from", lines: "directory_stale_if_error off\n directory_snapshot /tmp/x.gob",
			wantErr: `directory_snapshot "/tmp/x.gob": nothing would ever be served from it with directory_stale_if_error off`},
		{name: "bad duration", lines: "directory_stale_if_error forever", wantErr: `directory_stale_if_error: bad duration "forever"`},
		{name: "given twice", lines: "directory_stale_if_error 1h\n directory_stale_if_error 2h", wantErr: "directory_stale_if_error is set twice"},
		{name: "snapshot without a path", lines: "directory_snapshot", wantErr: "directory_snapshot needs a file path, or off"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var a App
			err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("sentry_silo {\n region us http://us.internal\n " + tc.lines + "\n}"))
			if err == nil {
				js, _ := json.Marshal(a)
				if tc.wantJSON != "" && !strings.Contains(string(js), tc.wantJSON) {
					t.Fatalf("adapted JSON %s lacks %s", js, tc.wantJSON)
				}
				// Through JSON, as Caddy loads it.
				a = App{}
				if err := json.Unmarshal(js, &a); err != nil {
					t.Fatal(err)
				}
				err = a.resolve()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tc.wantFile
			if want == "default" {
				want = DefaultDirectorySnapshotPath()
			}
			if a.fallback.staleIfError != tc.wantStale || a.fallback.snapshot.Path != want {
				t.Fatalf("resolved to %+v, want stale %s file %q", a.fallback, tc.wantStale, want)
			}
			if time.Duration(*a.DirectoryStaleIfError) != tc.wantStale {
				t.Fatalf("provisioned config shows directory_stale_if_error %s, want %s", time.Duration(*a.DirectoryStaleIfError), tc.wantStale)
			}
		})
	}
}

// JSON configs get the same checks.
func TestDirectoryFallbackJSONErrors(t *testing.T) {
	neg := caddy.Duration(-time.Second)
	a := App{Regions: []RegionConfig{{Name: "us", Address: "http://us.internal"}}, DirectoryStaleIfError: &neg}
	if err := a.resolve(); err == nil || !strings.Contains(err.Error(), "directory_stale_if_error: must not be negative") {
		t.Fatalf("err = %v", err)
	}
}

// The providers kept out of the snapshot are providers whose integrations
// capture reads: a misspelt name would silently keep nothing out.
func TestMetadataSecretProvidersAreIntegrationProviders(t *testing.T) {
	for _, p := range metadataSecretProviders {
		if !webhooks.ReadsIntegrations(p) {
			t.Errorf("%q is not a provider whose integrations capture reads", p)
		}
	}
}

// Readiness: ready once the storage migrations ran and the directory's
// database answered once, or last good answers were restored; never
// before; always in monolith mode.
func TestReadiness(t *testing.T) {
	on, off := true, false
	tests := []struct {
		name        string
		mode        string
		migrate     *bool
		migrated    bool
		tablesFound bool
		answered    bool // a lookup was answered by the database
		restored    bool // last good answers were restored
		want        Readiness
	}{
		{name: "nothing yet", migrate: &on,
			want: Readiness{Storage: "migrating", Directory: "waiting", Reasons: []string{reasonMigrations, reasonNoDirectory}}},
		{name: "migrated, directory waiting", migrate: &on, migrated: true,
			want: Readiness{Storage: "migrated", Directory: "waiting", Reasons: []string{reasonNoDirectory}}},
		{name: "directory answered, not migrated", migrate: &on, tablesFound: true,
			want: Readiness{Storage: "migrating", Directory: "answered", Reasons: []string{reasonMigrations}}},
		{name: "ready by the tables check", migrate: &on, migrated: true, tablesFound: true,
			want: Readiness{Ready: true, Storage: "migrated", Directory: "answered"}},
		{name: "ready by a lookup", migrate: &on, migrated: true, answered: true,
			want: Readiness{Ready: true, Storage: "migrated", Directory: "answered"}},
		{name: "ready by the snapshot during an outage", migrate: &on, migrated: true, restored: true,
			want: Readiness{Ready: true, Storage: "migrated", Directory: "restored"}},
		{name: "migrate off", migrate: &off, tablesFound: true,
			want: Readiness{Ready: true, Storage: "unmanaged", Directory: "answered"}},
		{name: "monolith", mode: ModeMonolith, migrate: &on,
			want: Readiness{Ready: true, Storage: "monolith", Directory: "monolith"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &readinessSource{}
			src.err.Store(true)
			a := &App{Mode: tc.mode, Migrate: tc.migrate, shared: &sharedStorage{}, tablesFound: new(atomic.Bool)}
			if a.Mode == "" {
				a.Mode = ModeControl
			}
			a.shared.migrated.Store(tc.migrated)
			a.tablesFound.Store(tc.tablesFound)
			a.dir = directory.New(src, directory.Options{})
			if tc.restored {
				// A restart: the previous process saved what it knew.
				src.err.Store(false)
				old := directory.New(src, directory.Options{})
				if _, err := old.Organization(t.Context(), "acme"); err != nil {
					t.Fatal(err)
				}
				src.err.Store(true)
				path := filepath.Join(t.TempDir(), "snap.gob")
				if err := (directory.Snapshot{Path: path}).Save(old); err != nil {
					t.Fatal(err)
				}
				if n, err := (directory.Snapshot{Path: path}).Load(a.dir); n != 1 || err != nil {
					t.Fatalf("Load = %d, %v", n, err)
				}
			}
			if tc.answered {
				src.err.Store(false)
				_, _ = a.dir.Organization(t.Context(), "acme")
			}
			got := a.Readiness()
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(tc.want)
			if string(gotJSON) != string(wantJSON) {
				t.Fatalf("readiness %s, want %s", gotJSON, wantJSON)
			}
		})
	}
}

// readinessSource answers the organization acme, or fails while err is
// set. Readiness needs nothing else of a Source.
type readinessSource struct {
	directory.Source
	err atomic.Bool
}

func (s *readinessSource) OrganizationBySlug(_ context.Context, slug string) (directory.Organization, error) {
	if s.err.Load() {
		return directory.Organization{}, errors.New("connection refused")
	}
	if slug != "acme" {
		return directory.Organization{}, directory.ErrNotFound
	}
	return directory.Organization{ID: 1, Slug: "acme", Region: "us"}, nil
}
