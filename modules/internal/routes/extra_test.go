package routes

import (
	"strings"
	"testing"
)

func TestOverlapsAndCovers(t *testing.T) {
	for _, tc := range []struct {
		a, b             string
		overlap, aCovers bool
	}{
		{"/a/b", "/a/b/", true, true},
		{"/a/b", "/a/c", false, false},
		{"/a/*", "/a/b", true, true},
		{"/a/b", "/a/*", true, false},
		{"/a/#", "/a/12", true, true},
		{"/a/#", "/a/x1", false, false},
		{"/a/#", "/a/*", true, false},
		{"/a/*", "/a/#", true, true},
		{"/a/**", "/a", true, true},
		{"/a/**", "/a/b/c/d", true, true},
		{"/a/b/c", "/a/**", true, false},
		{"/a/**", "/b/**", false, false},
		{"/a/*/c", "/a/b/**", true, false},
		{"/a/*", "/a/*/b", false, false},
		{"/", "/", true, true},
		{"/", "/a", false, false},
		{"/**", "/a/b", true, true},
		{"/a/{key}/b", "/a/*/b", true, true},
		{"/a/**", "/a/**", true, true},
		{"bad", "/a", false, false},
	} {
		if got := Overlaps(tc.a, tc.b); got != tc.overlap {
			t.Errorf("Overlaps(%s, %s) = %v", tc.a, tc.b, got)
		}
		if got := Overlaps(tc.b, tc.a); got != tc.overlap {
			t.Errorf("Overlaps(%s, %s) = %v (not symmetric)", tc.b, tc.a, got)
		}
		if got := Covers(tc.a, tc.b); got != tc.aCovers {
			t.Errorf("Covers(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

// TestUnchanged checks each reason against the compiled table: a pattern
// called a no-op must send its sample paths where the table already does.
func TestUnchanged(t *testing.T) {
	table := MustCompile(Table)
	for _, tc := range []struct {
		pattern string
		kind    Kind
		want    string // "" : may change something
		samples []string
	}{
		{"/api/0/nothing/**", Control, "matches no path the gateway sends to a region", []string{"/api/0/nothing/", "/api/0/nothing/a/b/"}},
		{"/api/0/organizations/*/audit-logs", Control, "built-in route /api/0/organizations/*/audit-logs", []string{"/api/0/organizations/acme/audit-logs/"}},
		{"/api/0/organizations/*/integrations/*/repo-sync", Control, "built-in route", []string{"/api/0/organizations/acme/integrations/7/repo-sync/"}},
		{"/api/0/organizations/*/**", Control, "", nil},
		{"/api/0/organizations/*/integrations/**", Control, "", nil}, // coding-agents goes to the region
		{"/api/0/groups/*", Default, "built-in route /api/0/groups/*", []string{"/api/0/groups/1/"}},
		{"/api/0/relays/x/**", Default, "built-in route /api/0/relays/**", []string{"/api/0/relays/x/y/"}},
		{"/api/0/groups/**", Default, "", nil},
		{"/api/0/broadcasts/**", Default, "", nil},
		{"/api/embed/error-page", Default, "", nil},
	} {
		got := Unchanged(tc.pattern, tc.kind, Table)
		if (got == "") != (tc.want == "") || !strings.Contains(got, tc.want) {
			t.Errorf("Unchanged(%s, %s) = %q, want %q", tc.pattern, tc.kind, got, tc.want)
		}
		for _, p := range tc.samples {
			m := table.Lookup(p)
			if tc.kind == Control && m.Kind.Proxied() || tc.kind == Default && m.Kind != Default {
				t.Errorf("%s called a no-op as %s, but the table sends %s to %s", tc.pattern, tc.kind, p, m.Kind)
			}
		}
	}
}
