package integration_tests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// TestCLIAgainstQuickstart runs `caddy silo` (the real binary) against a
// running quickstart: the commands the README does not show, their JSON,
// the admin address found from --address, CADDY_ADMIN or --config, and
// the exit codes a script branches on.
func TestCLIAgainstQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary; left out under -short")
	}
	q := startQuickstart(t)
	bin := harness.Binary(t)
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	silo := func(env []string, args ...string) (string, string, int) {
		c := exec.Command(bin, append([]string{"silo"}, args...)...)
		c.Dir, c.Env = root, append(os.Environ(), env...)
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			return stdout.String(), stderr.String(), ee.ExitCode()
		case err != nil:
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), 0
	}
	admin := []string{"CADDY_ADMIN=" + q.admin.Addr}

	// One dead letter in de (its marker makes it answer 404), and one
	// webhook waiting in a paused mailbox of us.
	if err := os.WriteFile(q.marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, _, code := silo(admin, "pause", "mailbox", "github:us:10:1:pull_request", "--reason", "cli test", "--by", "tester"); code != 0 {
		t.Fatalf("pause: %d %s", code, out)
	}
	postGitHub(t, q.ports["8000"].URL(), "cli-1")
	waitFor(t, "the dead letter in de", 30*time.Second, func() bool {
		return metricValue(t, q.admin.Addr, "caddy_sentry_deliveries_total", `outcome="dropped_404",region="de"`) >= 1
	})
	var list struct {
		DeadLetters []struct {
			ID      int64  `json:"id"`
			Mailbox string `json:"mailbox"`
			Reason  string `json:"reason"`
		} `json:"dead_letters"`
	}
	out, _, code := silo(admin, "dead-letters", "list", "--json", "--reason", "dropped_404")
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list.DeadLetters) != 1 || list.DeadLetters[0].Mailbox != "github:de:10:1:pull_request" {
		t.Fatalf("dead-letters list --json: %d %v %s", code, err, out)
	}
	id := fmt.Sprint(list.DeadLetters[0].ID)

	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(cfg, []byte("{\n\tadmin "+q.admin.Addr+"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		env      []string
		args     []string
		wantCode int
		wantOut  []string // lines of stdout ("..." for anything)
		wantErr  string   // in stderr
	}{
		{"status by --address", nil, []string{"status", "--address", q.admin.Addr}, 0, []string{"mode control", "us closed 0 0 - -"}, ""},
		{"address from --config, as caddy reload", nil, []string{"pauses", "--config", cfg}, 0, []string{"mailbox github:us:10:1:pull_request ... tester cli test"}, ""},
		{"one paused mailbox", admin, []string{"mailboxes", "github:us:10:1:pull_request"}, 0, []string{"mailbox github:us:10:1:pull_request (region us, provider github)", "paused paused: cli test"}, ""},
		{"filtered by region", admin, []string{"mailboxes", "--region", "de"}, 0, []string{"no mailbox has pending payloads"}, ""},
		{"dead letter shown, signatures masked", admin, []string{"dead-letters", "show", id}, 0, []string{"reason dropped_404 at ...", "X-Github-Delivery: cli-1", "X-Hub-Signature-256: [masked]"}, ""},
		{"retry a mailbox", admin, []string{"retry", "github:us:10:1:pull_request"}, 0, []string{"mailbox github:us:10:1:pull_request: its head is due now"}, ""},
		{"no such dead letter: exit 1", admin, []string{"dead-letters", "show", "999999"}, 1, nil, "404 Not Found"},
		{"no such region: exit 1", admin, []string{"pause", "region", "zz"}, 1, nil, "404 Not Found"},
		{"bad flag: exit 2", admin, []string{"dead-letters", "list", "--regoin", "us"}, 2, nil, "flag provided but not defined: -regoin"},
		{"bulk without filter: exit 2", admin, []string{"dead-letters", "delete"}, 2, nil, "give filters"},
		{"nothing listens: exit 3", nil, []string{"status", "--address", "127.0.0.1:1"}, 3, nil, "cannot reach the admin API"},
		{"delete it", admin, []string{"dead-letters", "delete", id}, 0, []string{"dead letter " + id + " deleted"}, ""},
		{"gone", admin, []string{"dead-letters", "list"}, 0, []string{"no dead letters"}, ""},
		{"resume", admin, []string{"resume", "mailbox", "github:us:10:1:pull_request"}, 0, []string{"mailbox github:us:10:1:pull_request resumed"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := silo(tc.env, tc.args...)
			if code != tc.wantCode || !matchesAll(out, tc.wantOut) || !strings.Contains(stderr, tc.wantErr) {
				t.Fatalf("caddy silo %s: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s\nwant lines %q, stderr with %q",
					strings.Join(tc.args, " "), code, tc.wantCode, out, stderr, tc.wantOut, tc.wantErr)
			}
		})
	}
	waitFor(t, "the resumed mailbox delivered", 30*time.Second, func() bool {
		return metricValue(t, q.admin.Addr, "caddy_sentry_deliveries_total", `outcome="delivered",region="us"`) >= 1
	})
}

func postGitHub(t *testing.T, base, delivery string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/extensions/github/webhook/",
		strings.NewReader(`{"action":"opened","installation":{"id":555},"repository":{"id":1}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "pull_request")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", "sha256=0000")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("GitHub webhook: %d, want 202", resp.StatusCode)
	}
}
