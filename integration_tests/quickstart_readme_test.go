package integration_tests

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// readmeStep is one command of the README's quickstart and what it must
// print: the "#>" lines under it.
type readmeStep struct {
	cmd    string
	expect []string
}

// readmeBlock is one ```sh block, under its ### heading.
type readmeBlock struct {
	heading string
	steps   []readmeStep
}

// readmeQuickstart parses the README's quickstart section: the ```sh
// blocks between the quickstart-test markers. A command may go on over
// lines ending in "\"; "#>" lines are its expected output; other "#" lines
// are comments.
func readmeQuickstart(t *testing.T) []readmeBlock {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	begin, end := strings.Index(s, "<!-- quickstart-test:begin"), strings.Index(s, "<!-- quickstart-test:end -->")
	if begin < 0 || end < begin {
		t.Fatal("README.md has no quickstart-test:begin / quickstart-test:end markers")
	}
	var blocks []readmeBlock
	heading, in := "", false
	var cur *readmeBlock
	var cont string
	for _, line := range strings.Split(s[begin:end], "\n") {
		switch {
		case !in && strings.HasPrefix(line, "### "):
			heading = strings.TrimPrefix(line, "### ")
		case !in && line == "```sh":
			in = true
			blocks = append(blocks, readmeBlock{heading: heading})
			cur = &blocks[len(blocks)-1]
		case in && line == "```":
			if cont != "" {
				t.Fatalf("README quickstart: a command ends in \\ at the end of its block: %s", cont)
			}
			in = false
		case in && strings.HasPrefix(line, "#>"):
			if len(cur.steps) == 0 {
				t.Fatalf("README quickstart: output %q before any command", line)
			}
			st := &cur.steps[len(cur.steps)-1]
			st.expect = append(st.expect, strings.TrimSpace(strings.TrimPrefix(line, "#>")))
		case in && (strings.HasPrefix(line, "#") || strings.TrimSpace(line) == ""):
		case in:
			cont += line
			if strings.HasSuffix(line, "\\") {
				cont += "\n"
				continue
			}
			cur.steps = append(cur.steps, readmeStep{cmd: cont})
			cont = ""
		}
	}
	return blocks
}

// readOnly commands may be run again until their output is what the README
// shows: the drainer delivers in the background, and a reader types the
// next command a moment later. Every other command runs exactly once.
var readOnly = []string{"./caddy silo status", "./caddy silo mailboxes", "./caddy silo dead-letters list", "./caddy silo pauses", "curl -s localhost:8000/api/"}

// TestQuickstartReadme runs the README's quickstart commands, as written,
// against the quickstart config: the ports, the marker file and the
// binary are the test's, and nothing else is changed. Each command must
// exit 0 and print the lines shown under it; after each block the test
// checks the effect the text claims, from the outside (the regions' log,
// the drainer's metrics).
func TestQuickstartReadme(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary; left out under -short")
	}
	blocks := readmeQuickstart(t)
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The first two blocks are the two commands the harness does itself:
	// run the quickstart, and build the binary.
	if len(blocks) < 2 || len(blocks[0].steps) != 1 || blocks[0].steps[0].cmd != "go run ./cmd/caddy run --config caddyfile_examples/quickstart.Caddyfile" {
		t.Fatalf("the README quickstart must start with the one command that runs it; got %+v", blocks[:min(1, len(blocks))])
	}
	if blocks[1].steps[0].cmd != "go build -o caddy ./cmd/caddy" {
		t.Fatalf("the second block must build ./caddy first; got %q", blocks[1].steps[0].cmd)
	}
	blocks[1].steps = blocks[1].steps[1:]
	q := startQuickstart(t)
	bin := harness.Binary(t)

	// What each block's text claims, checked once its commands ran.
	deliveredTo := func(region string) float64 {
		return metricValue(t, q.admin.Addr, "caddy_sentry_deliveries_total", `outcome="delivered",region="`+region+`"`)
	}
	claims := map[string]func(t *testing.T){
		"A GitHub webhook, captured while its region is paused": func(t *testing.T) {
			waitFor(t, "the webhook delivered to de", 30*time.Second, func() bool { return deliveredTo("de") >= 1 })
			if n := regionRequests(q.caddy.Logs(), q.ports["8010"].Num); n != 0 || deliveredTo("us") != 0 {
				t.Errorf("paused region us received %d webhooks (%v delivered), want none", n, deliveredTo("us"))
			}
			// The dashboard's page, and its data through its forwarder to
			// the admin API.
			dash := q.ports["8020"].URL()
			if body, status := get(t, dash+"/"); status != 200 || !strings.Contains(body, "<html") {
				t.Errorf("dashboard page: %d %.200s", status, body)
			}
			if body, status := get(t, dash+"/sentry_silo/mailboxes"); status != 200 || !strings.Contains(body, `"github:us:10:1:pull_request"`) || !strings.Contains(body, `"quickstart demo"`) {
				t.Errorf("dashboard's mailboxes: %d %.300s", status, body)
			}
		},
		"The region resumed, the webhook delivered": func(t *testing.T) {
			if err := harness.Poll(30*time.Second, func() bool { return deliveredTo("us") >= 1 && deliveredTo("de") >= 1 }); err != nil {
				t.Fatalf("the webhook delivered to us and de: %v (us %v, de %v)\n%s", err, deliveredTo("us"), deliveredTo("de"), metricsOf(t, q.admin.Addr))
			}
			if n := regionRequests(q.caddy.Logs(), q.ports["8010"].Num); n != 1 {
				t.Errorf("region us received the webhook %d times, want 1 (after the resume only)", n)
			}
		},
		"A dead letter, replayed": func(t *testing.T) {
			if got := metricValue(t, q.admin.Addr, "caddy_sentry_deliveries_total", `outcome="dropped_404",region="de"`); got != 1 {
				t.Errorf("dropped_404 to de: %v, want 1", got)
			}
			waitFor(t, "the replay delivered to de", 30*time.Second, func() bool { return deliveredTo("de") >= 2 })
			// de: demo-1, demo-2 answered 404, demo-2 replayed.
			if n := regionRequests(q.caddy.Logs(), q.ports["8011"].Num); n != 3 {
				t.Errorf("region de received %d webhooks, want 3", n)
			}
		},
	}

	env := append(os.Environ(), "CADDY_ADMIN="+q.admin.Addr)
	ran := 0
	// A heading's claim is checked once all its blocks ran.
	checkClaim := func(heading string) {
		if claim := claims[heading]; claim != nil {
			claim(t)
			delete(claims, heading)
		}
	}
	for i, b := range blocks[1:] {
		if i > 0 && b.heading != blocks[i].heading {
			checkClaim(blocks[i].heading)
		}
		for _, st := range b.steps {
			cmd := q.rewrite(st.cmd)
			cmd = strings.ReplaceAll(cmd, "./caddy ", bin+" ")
			expect := make([]string, len(st.expect))
			for i, e := range st.expect {
				expect[i] = q.rewrite(e)
			}
			retry := false
			for _, p := range readOnly {
				retry = retry || strings.HasPrefix(st.cmd, p)
			}
			var out string
			var runErr error
			try := func() bool {
				out, runErr = runShell(root, env, cmd)
				return runErr == nil && matchesAll(out, expect)
			}
			if retry {
				_ = harness.Poll(30*time.Second, try)
			} else {
				try()
			}
			if runErr != nil || !matchesAll(out, expect) {
				t.Fatalf("README quickstart, %q:\n$ %s\n%s\nerror: %v\nwant the lines:\n%s\ncaddy's log:\n%s",
					b.heading, st.cmd, out, runErr, strings.Join(st.expect, "\n"), q.caddy.Logs())
			}
			ran++
		}
	}
	checkClaim(blocks[len(blocks)-1].heading)
	for heading := range claims {
		t.Errorf("the README has no quickstart block under %q, whose effect this test checks", heading)
	}
	if ran < 15 {
		t.Errorf("ran %d README commands; the section lost some", ran)
	}
}

func runShell(dir string, env []string, cmd string) (string, error) {
	c := exec.Command("sh", "-c", cmd)
	c.Dir, c.Env = dir, env
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	if err != nil {
		err = fmt.Errorf("%v; stderr: %s", err, stderr.String())
	}
	return stdout.String(), err
}

// matchesAll reports whether every expected line matches a line of out,
// blanks runs compared as one space (tables align to their contents) and
// "..." standing for anything.
func matchesAll(out string, expect []string) bool {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		lines = append(lines, collapse(l))
	}
	for _, e := range expect {
		parts := strings.Split(collapse(e), "...")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		re := regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
		found := false
		for _, l := range lines {
			if re.MatchString(l) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

func get(t *testing.T, url string) (string, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

// regionRequests counts the webhooks a demo region logged receiving.
func regionRequests(logs string, port int) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "handled request") && strings.Contains(line, `"uri":"/extensions/github/webhook/"`) &&
			strings.Contains(line, fmt.Sprintf(`"host":"127.0.0.1:%d"`, port)) {
			n++
		}
	}
	return n
}

func TestMatchesAll(t *testing.T) {
	out := "ID  MAILBOX       REASON\n5   github:de:10  dropped_404\nregion us resumed\n"
	for _, tc := range []struct {
		expect []string
		want   bool
	}{
		{[]string{"region us resumed"}, true},
		{[]string{"ID MAILBOX REASON", "... github:de:10 dropped_404"}, true},
		{[]string{"region us"}, false}, // a whole line, not a part
		{[]string{"region us resumed", "no dead letters"}, false},
		{[]string{"5 github:...:10 dropped_404"}, true},
		{nil, true},
	} {
		if got := matchesAll(out, tc.expect); got != tc.want {
			t.Errorf("matchesAll(%q) = %v, want %v", tc.expect, got, tc.want)
		}
	}
}
