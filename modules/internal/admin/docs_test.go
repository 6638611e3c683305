package admin

import (
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docRoute is a line of the routes table of docs/admin-api.md:
// "| `GET /sentry_silo/mailboxes/<name>` | ...".
var docRoute = regexp.MustCompile("^\\| `(GET|POST|DELETE) /sentry_silo/([^`]*)` \\|")

// documentedRoutes reads the routes table of docs/admin-api.md, as
// "METHOD path" with its placeholders (<region>, <name>, <id>).
func documentedRoutes(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../../../docs/admin-api.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(doc), "\n") {
		if m := docRoute.FindStringSubmatch(line); m != nil {
			out = append(out, m[1]+" "+m[2])
		}
	}
	if len(out) < 20 {
		t.Fatalf("found %d routes in docs/admin-api.md; has the table's format changed?", len(out))
	}
	return out
}

// placeholder is what the docs write for the second segment of a path.
func placeholder(head string) string {
	switch head {
	case "regions":
		return "<region>"
	case "mailboxes":
		return "<name>"
	}
	return "<id>"
}

// The routes of the code are exactly the routes of docs/admin-api.md:
// every documented route is served (not a 404 "no admin route", not a
// 405), and no path shape under a documented collection serves a method
// the docs do not list.
func TestDocumentedRoutes(t *testing.T) {
	documented := documentedRoutes(t)
	var heads []string
	for _, r := range documented {
		_, path, _ := strings.Cut(r, " ")
		head, _, _ := strings.Cut(path, "/")
		if !slices.Contains(heads, head) {
			heads = append(heads, head)
		}
	}
	var served []string
	for _, head := range heads {
		shapes := [][]string{{head}, {head, "x"}}
		for _, third := range []string{"pause", "resume", "retry", "replay", "x"} {
			shapes = append(shapes, []string{head, "x", third})
		}
		// "replay" in second place is a route of its own where it serves
		// other methods than a name or an id there does (the bulk
		// replays); elsewhere it is just a name.
		if methods(match([]string{head, "replay"})) != methods(match([]string{head, "x"})) {
			shapes = append(shapes, []string{head, "replay"})
		}
		for _, segs := range shapes {
			doc := slices.Clone(segs)
			if len(doc) > 1 && doc[1] == "x" {
				doc[1] = placeholder(head)
			}
			for _, rt := range match(segs) {
				served = append(served, rt.method+" "+strings.Join(doc, "/"))
			}
		}
	}
	slices.Sort(served)
	want := slices.Clone(documented)
	slices.Sort(want)
	if !slices.Equal(served, want) {
		t.Errorf("the code serves\n  %s\nthe docs list\n  %s", strings.Join(served, "\n  "), strings.Join(want, "\n  "))
	}

	// Through ServeHTTP, with the placeholders filled in (a mailbox
	// name with its colons escaped, as a client sends it).
	api := newAPI(openSQLite(t), &wakes{})
	fill := strings.NewReplacer("<region>", "us", "<name>", "jira%3Aus%3A1", "<id>", "1")
	for _, r := range documented {
		method, path, _ := strings.Cut(r, " ")
		a := do(t, api, method, Prefix+fill.Replace(path))
		msg, _ := a.json["error"].(string)
		if a.status == http.StatusMethodNotAllowed || strings.Contains(msg, "no admin route") {
			t.Errorf("%s: %d %s", r, a.status, a.raw)
		}
	}
}

func methods(routes []route) string {
	var ms []string
	for _, rt := range routes {
		ms = append(ms, rt.method)
	}
	return strings.Join(ms, ",")
}
