package routes

import (
	"strings"
	"testing"
)

var table = MustCompile(Table)

// One case per row of Table, in its order, plus the cases that show the
// order matters. Every row must be hit by some case (TestEveryRowCovered).
var cases = []struct {
	path   string
	kind   Kind
	key    string
	upload bool
}{
	// 1
	{"/api/0/organizations/acme/integrations/coding-agents/", Organization, "acme", false},
	// 2 control carve-outs
	{"/api/0/organizations/acme/api-keys/", Control, "", false},
	{"/api/0/organizations/acme/api-keys/12/", Control, "", false},
	{"/api/0/organizations/acme/audit-logs/", Control, "", false},
	{"/api/0/organizations/acme/broadcasts/", Control, "", false},
	{"/api/0/organizations/acme/data-secrecy/", Control, "", false},
	{"/api/0/organizations/acme/integrations/", Control, "", false},
	{"/api/0/organizations/acme/integrations/42/", Control, "", false},
	{"/api/0/organizations/acme/integrations/42/channel-validate/", Control, "", false},
	{"/api/0/organizations/acme/integrations/42/channels/", Control, "", false},
	{"/api/0/organizations/acme/integrations/42/repo-sync/", Control, "", false},
	{"/api/0/organizations/acme/integrations/direct-enable/github/x/", Control, "", false},
	{"/api/0/organizations/acme/intercom-jwt/", Control, "", false},
	{"/api/0/organizations/acme/monitoring-providers/", Control, "", false},
	{"/api/0/organizations/acme/org-auth-tokens/7/", Control, "", false},
	{"/api/0/organizations/acme/pipeline/github/", Control, "", false},
	{"/api/0/organizations/acme/sentry-app-components/", Control, "", false},
	{"/api/0/organizations/acme/sentry-app-installations/", Control, "", false},
	{"/api/0/organizations/acme/sentry-apps/", Control, "", false},
	// 3 uploads
	{"/api/0/organizations/acme/web/files/dsyms/", Organization, "acme", true},
	{"/api/0/organizations/acme/web/files/installablepreprodartifact/9/", Organization, "acme", true},
	{"/api/0/organizations/acme/web/files/preprodartifacts/9/", Organization, "acme", true},
	{"/api/0/organizations/acme/web/releases/1.0/files/", Organization, "acme", true},
	{"/api/0/organizations/acme/chunk-upload/", Organization, "acme", true},
	{"/api/0/organizations/acme/objectstore/", Organization, "acme", true},
	{"/api/0/organizations/acme/objectstore/a/b/c", Organization, "acme", true},
	{"/api/0/organizations/acme/preprodartifacts/9/size-analysis/", Organization, "acme", true},
	{"/api/0/organizations/acme/preprodartifacts/snapshots/9/archive/", Organization, "acme", true},
	{"/api/0/organizations/acme/releases/1.0/files/", Organization, "acme", true},
	{"/api/0/projects/acme/web/files/dsyms/", Organization, "acme", true},
	{"/api/0/projects/acme/web/files/installablepreprodartifact/9/", Organization, "acme", true},
	{"/api/0/projects/acme/web/files/preprodartifacts/9/", Organization, "acme", true},
	{"/api/0/projects/acme/web/releases/1.0/files/", Organization, "acme", true},
	{"/api/0/projects/acme/web/preprodartifacts/snapshots/9/download/", Organization, "acme", true},
	// 4 by organization
	{"/api/0/_admin/customers/acme/", Organization, "acme", false},
	{"/api/0/customers/acme/invoices/", Organization, "acme", false},
	{"/api/0/internal-stats/acme/", Organization, "acme", false},
	{"/api/0/organizations/beta/issues/", Organization, "beta", false},
	{"/api/0/organizations/2/projects/", Organization, "2", false},
	{"/api/0/organizations/acme/", Organization, "acme", false},
	{"/api/0/organizations/acme", Organization, "acme", false},
	{"/api/0/projects/acme/web/", Organization, "acme", false},
	{"/api/0/teams/acme/backend/members/", Organization, "acme", false},
	{"/organizations/acme/billing/", Organization, "acme", false},
	{"/organizations/acme/issues/1/events/abc/json/", Organization, "acme", false},
	{"/organizations/acme/payments/x/", Organization, "acme", false},
	{"/organizations/acme/projects/web/events/abc/", Organization, "acme", false},
	{"/organizations/acme/projects/web/issues/1/tags/browser/export/", Organization, "acme", false},
	{"/plugins/bitbucket/organizations/2/webhook/", Organization, "2", false},
	{"/plugins/github/organizations/acme/webhook/", Organization, "acme", false},
	{"/team-avatar/acme/", Organization, "acme", false},
	{"/toolbar/acme/web/iframe/", Organization, "acme", false},
	// 5
	{"/api/0/_admin/cells/de/x", Region, "de", false},
	{"/api/0/_admin/cells/de/", Region, "de", false},
	// 6
	{"/api/embed/error-page/", ErrorPage, "", false},
	// Sentry Apps
	{"/api/0/sentry-app-installations/9c8d/external-requests/", SentryAppInstallation, "9c8d", false},
	{"/api/0/sentry-app-installations/9c8d/external-issue-actions/", SentryAppInstallation, "9c8d", false},
	{"/api/0/sentry-app-installations/9c8d/external-issues/", SentryAppInstallation, "9c8d", false},
	{"/api/0/sentry-app-installations/9c8d/external-issues/5/", SentryAppInstallation, "9c8d", false},
	{"/api/0/sentry-apps/my-app/requests/", SentryApp, "my-app", false},
	{"/api/0/sentry-apps/17/interaction/", SentryApp, "17", false},
	// JS SDK loader
	{"/js-sdk-loader/abc123.min.js", ProjectKey, "abc123", false},
	{"/js-sdk-loader/abc123.js", ProjectKey, "abc123", false},
	// 7 legacy pins
	{"/api/0/accept-transfer/", Default, "", false},
	{"/api/0/groups/1/", Default, "", false},
	{"/api/0/groups/1/activities/", Default, "", false},
	{"/api/0/groups/1/attachments/", Default, "", false},
	{"/api/0/groups/1/autofix/setup/", Default, "", false},
	{"/api/0/groups/1/comments/", Default, "", false},
	{"/api/0/groups/1/current-release/", Default, "", false},
	{"/api/0/groups/1/events/latest/", Default, "", false},
	{"/api/0/groups/1/external-issues/", Default, "", false},
	{"/api/0/groups/1/hashes/", Default, "", false},
	{"/api/0/groups/1/integrations/", Default, "", false},
	{"/api/0/groups/1/notes/2/", Default, "", false},
	{"/api/0/groups/1/plugin/", Default, "", false},
	{"/api/0/groups/1/plugins/", Default, "", false},
	{"/api/0/groups/1/related-issues/", Default, "", false},
	{"/api/0/groups/1/reprocessing/", Default, "", false},
	{"/api/0/groups/1/similar-issues-embeddings/", Default, "", false},
	{"/api/0/groups/1/similar/", Default, "", false},
	{"/api/0/groups/1/stats/", Default, "", false},
	{"/api/0/groups/1/summarize/", Default, "", false},
	{"/api/0/groups/1/tags/browser/", Default, "", false},
	{"/api/0/groups/1/user-feedback/", Default, "", false},
	{"/api/0/groups/1/user-reports/", Default, "", false},
	{"/api/0/issues/123/", Default, "", false},
	{"/api/0/issues/123/activities/", Default, "", false},
	{"/api/0/issues/123/attachments/", Default, "", false},
	{"/api/0/issues/123/autofix/", Default, "", false},
	{"/api/0/issues/123/comments/", Default, "", false},
	{"/api/0/issues/123/current-release/", Default, "", false},
	{"/api/0/issues/123/events/", Default, "", false},
	{"/api/0/issues/123/external-issues/", Default, "", false},
	{"/api/0/issues/123/hashes/", Default, "", false},
	{"/api/0/issues/123/integrations/", Default, "", false},
	{"/api/0/issues/123/notes/", Default, "", false},
	{"/api/0/issues/123/plugin/", Default, "", false},
	{"/api/0/issues/123/plugins/", Default, "", false},
	{"/api/0/issues/123/related-issues/", Default, "", false},
	{"/api/0/issues/123/reprocessing/", Default, "", false},
	{"/api/0/issues/123/similar-issues-embeddings/", Default, "", false},
	{"/api/0/issues/123/similar/", Default, "", false},
	{"/api/0/issues/123/stats/", Default, "", false},
	{"/api/0/issues/123/summarize/", Default, "", false},
	{"/api/0/issues/123/tags/", Default, "", false},
	{"/api/0/issues/123/user-feedback/", Default, "", false},
	{"/api/0/issues/123/user-reports/", Default, "", false},
	{"/api/0/projects/", Default, "", false},
	{"/api/0/relays/projectconfigs/", Default, "", false},
	{"/api/0/relays/", Default, "", false},
	{"/api/0/seer/models/", Default, "", false},
	{"/api/0/users/me/organizations/", Default, "", false},
	{"/api/hooks/release/builtin/1/abc/", Default, "", false},
	{"/issues/a/b/tags/t/export/", Default, "", false},
	{"/organization-avatar/x/", Default, "", false},
	// 8 short links
	{"/acme/web/issues/12/tags/browser/export/", Organization, "acme", false},
	{"/acme/web/issues/12/actions/resolve/", Organization, "acme", false},
	{"/acme/web/events/abc/", Organization, "acme", false},

	// Not ours: control.
	{"/", Next, "", false},
	{"/api/0/", Next, "", false},
	{"/api/0/users/me/", Next, "", false},
	{"/api/0/organizations/", Next, "", false},
	{"/api/0/sentry-app-installations/9c8d/", Next, "", false},
	{"/api/0/sentry-app-installations/9c8d/authorizations/", Next, "", false},
	{"/api/0/sentry-apps/my-app/", Next, "", false},
	{"/acme/web/issues/notdigits/actions/resolve/", Next, "", false},
	{"/api/0/issues/123/unknown-sub/", Next, "", false},
	{"/api/0/internal/integration-proxy/", Next, "", false},
	{"/extensions/github/webhook/", Next, "", false},
	{"/api//0/organizations/acme/", Next, "", false},
	{"", Next, "", false},
	{"relative/path", Next, "", false},
}

func TestLookup(t *testing.T) {
	for _, c := range cases {
		got := table.Lookup(c.path)
		if got.Kind != c.kind || got.Key != c.key || got.Upload != c.upload {
			row := "none"
			if got.Row >= 0 {
				row = Table[got.Row].Pattern
			}
			t.Errorf("Lookup(%q) = %s %q upload=%v (row %s); want %s %q upload=%v",
				c.path, got.Kind, got.Key, got.Upload, row, c.kind, c.key, c.upload)
		}
	}
}

func TestEveryRowCovered(t *testing.T) {
	hit := make([]bool, len(Table))
	for _, c := range cases {
		if m := table.Lookup(c.path); m.Row >= 0 {
			hit[m.Row] = true
		}
	}
	for i, h := range hit {
		if !h {
			t.Errorf("row %d %q has no test case", i, Table[i].Pattern)
		}
	}
}

// The trie must agree with the obvious reading of the table: the first
// row, in order, whose pattern matches.
func TestTrieAgreesWithLinearScan(t *testing.T) {
	for _, c := range cases {
		if got, want := table.Lookup(c.path), linear(Table, c.path); got != want {
			t.Errorf("Lookup(%q) = %+v, linear scan %+v", c.path, got, want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	bad := []Route{
		{"no/slash", Control, false},
		{"/a/**/b", Control, false},
		{"/a/{key}/{key}", Organization, false},
		{"/a/b", Organization, false},
		{"/a/{key}", Default, false},
		{"/a//b", Control, false},
		{"/a/x*", Control, false},
	}
	for _, r := range bad {
		if _, err := Compile([]Route{r}); err == nil {
			t.Errorf("Compile(%q, %s) accepted", r.Pattern, r.Kind)
		}
	}
}

// Extra rows put before the table win over it (control_path, pin_path).
func TestExtraRowsFirst(t *testing.T) {
	rows := append([]Route{
		{"/api/0/organizations/*/custom-control/**", Control, false},
		{"/api/0/shared-thing", Default, false},
	}, Table...)
	c := MustCompile(rows)
	if m := c.Lookup("/api/0/organizations/acme/custom-control/x/"); m.Kind != Control {
		t.Errorf("control_path: got %s", m.Kind)
	}
	if m := c.Lookup("/api/0/shared-thing/"); m.Kind != Default {
		t.Errorf("pin_path: got %s", m.Kind)
	}
	if m := c.Lookup("/api/0/organizations/acme/issues/"); m.Kind != Organization {
		t.Errorf("table: got %s", m.Kind)
	}
}

func TestLookupAllocatesNothing(t *testing.T) {
	paths := []string{"/api/0/organizations/acme/issues/", "/api/0/issues/123/events/", "/acme/web/events/abc/", "/api/0/users/me/"}
	for _, p := range paths {
		if n := testing.AllocsPerRun(100, func() { table.Lookup(p) }); n != 0 {
			t.Errorf("Lookup(%q) allocates %.0f times", p, n)
		}
	}
}

// linear is the reference matcher: try each row in order.
func linear(rows []Route, path string) Match {
	if path == "" || path[0] != '/' {
		return Match{Row: -1}
	}
	p := strings.TrimSuffix(path[1:], "/")
	var segs []string
	if p != "" {
		segs = strings.Split(p, "/")
	}
	for i, r := range rows {
		pat, _ := parsePattern(r.Pattern)
		if key, ok := matchSegs(pat, segs); ok {
			if r.Kind == ProjectKey {
				if j := strings.IndexByte(key, '.'); j >= 0 {
					key = key[:j]
				}
			}
			return Match{Kind: r.Kind, Key: key, Upload: r.Upload, Row: i}
		}
	}
	return Match{Row: -1}
}

func matchSegs(pat []seg, segs []string) (string, bool) {
	key := ""
	for i, s := range pat {
		if s.kind == segRest {
			return key, true
		}
		if i >= len(segs) {
			return "", false
		}
		v := segs[i]
		switch s.kind {
		case segLiteral:
			if v != s.lit {
				return "", false
			}
		case segKey:
			if v == "" {
				return "", false
			}
			key = v
		case segAny:
			if v == "" {
				return "", false
			}
		case segDigits:
			if !allDigits(v) {
				return "", false
			}
		}
	}
	return key, len(pat) == len(segs)
}

func FuzzRoute(f *testing.F) {
	for _, c := range cases {
		f.Add(c.path)
	}
	f.Add("//")
	f.Add("/api/0/organizations//issues/")
	f.Add("/" + strings.Repeat("a/", 500))
	f.Fuzz(func(t *testing.T, path string) {
		got := table.Lookup(path)
		if want := linear(Table, path); got != want {
			t.Fatalf("Lookup(%q) = %+v, linear scan %+v", path, got, want)
		}
		if got.Kind.Proxied() && got.Kind != ErrorPage && got.Kind != Default && got.Key == "" && got.Kind != ProjectKey {
			t.Fatalf("Lookup(%q): %s with an empty key", path, got.Kind)
		}
		if got.Key != "" && !strings.Contains(path, got.Key) {
			t.Fatalf("Lookup(%q): key %q is not from the path", path, got.Key)
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	paths := []string{"/api/0/organizations/acme/issues/", "/api/0/issues/123/events/", "/acme/web/events/abc/", "/api/0/users/me/"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		table.Lookup(paths[i%len(paths)])
	}
}

func TestRegionFromDSN(t *testing.T) {
	tests := []struct {
		dsn, app string
		name     string
		def      bool
		err      bool
	}{
		{"https://k@o1.ingest.de.sentry.io/1", "sentry.io", "de", false, false},
		{"https://k@o1.ingest.us.sentry.io/1", "sentry.io", "us", false, false},
		{"https://k@o1.ingest.sentry.io/1", "sentry.io", "", true, false},
		{"https://k@o1.ingest.zz.sentry.io/1", "sentry.io", "zz", false, false},
		{"https://k@O1.INGEST.DE.SENTRY.IO/1", "sentry.io", "de", false, false},
		{"https://k@o1.ingest.de.sentry.example.com:8443/1", "sentry.example.com:8443", "de", false, false},
		{"https://k@o1.ingest.de.evilsentry.io/1", "sentry.io", "", false, true},
		{"https://k@example.com/1", "sentry.io", "", false, true},
		{"", "sentry.io", "", false, true},
		{"not a url", "sentry.io", "", false, true},
		{"k@o1.ingest.de.sentry.io/1", "sentry.io", "", false, true},
		{"https://k@o1.ingest.de.sentry.io/1", "", "", false, true},
		{"%zz", "sentry.io", "", false, true},
	}
	for _, tt := range tests {
		name, def, err := RegionFromDSN(tt.dsn, tt.app)
		if name != tt.name || def != tt.def || (err != nil) != tt.err {
			t.Errorf("RegionFromDSN(%q, %q) = %q, %v, %v; want %q, %v, err=%v", tt.dsn, tt.app, name, def, err, tt.name, tt.def, tt.err)
		}
	}
}

func FuzzRegionFromDSN(f *testing.F) {
	f.Add("https://k@o1.ingest.de.sentry.io/1", "sentry.io")
	f.Add("https://k@o1.ingest.sentry.io/1", "sentry.io")
	f.Add("http://[::1]:9000/1", "[::1]:9000")
	f.Add("%", "")
	f.Fuzz(func(t *testing.T, dsn, app string) {
		name, def, err := RegionFromDSN(dsn, app)
		if err != nil && (name != "" || def) {
			t.Fatalf("error with a result: %q %v", name, def)
		}
		if def && name != "" {
			t.Fatalf("default with a name %q", name)
		}
	})
}
