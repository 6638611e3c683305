package integration_tests

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// TestQuickstartRuns runs caddyfile_examples/quickstart.Caddyfile as the
// README tells users to (ports moved to free ones), checks that it stays up
// and that the demo answers as the file's comments say.
func TestQuickstartRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary; left out under -short")
	}
	raw, err := os.ReadFile("../caddyfile_examples/quickstart.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	ports := map[string]int{}
	for _, p := range []string{"8000", "9000", "8010", "8011"} {
		ports[p] = harness.FreePort(t)
		conf = strings.ReplaceAll(conf, ":"+p, fmt.Sprintf(":%d", ports[p]))
	}
	admin := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	// The global options block is the one that opens on a line of its own
	// (a snippet comes before it).
	conf = strings.Replace(conf, "\n{\n", "\n{\n"+harness.GlobalOptions(admin), 1)
	c := harness.Start(t, admin, conf)

	base := fmt.Sprintf("http://127.0.0.1:%d", ports["8000"])
	for _, tc := range []struct {
		path, wantBody string
		wantStatus     int
	}{
		{"/api/0/organizations/acme/issues/", "region us: GET /api/0/organizations/acme/issues/", 200},
		{"/api/0/organizations/beta/issues/", "region de: GET /api/0/organizations/beta/issues/", 200},
		{"/api/0/organizations/2/projects/", "region de: GET /api/0/organizations/2/projects/", 200},
		{"/api/0/organizations/nope/issues/", `{"error":"apigateway","detail":"Not found"}`, 404},
		{"/api/0/users/me/", "control silo: GET /api/0/users/me/", 200},
	} {
		resp, err := http.Get(base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus || strings.TrimSpace(string(body)) != tc.wantBody {
			t.Errorf("GET %s = %d %q, want %d %q", tc.path, resp.StatusCode, body, tc.wantStatus, tc.wantBody)
		}
	}
	time.Sleep(time.Second)
	if !c.Running() {
		t.Fatalf("the quickstart exited:\n%s", c.Logs())
	}
	if _, err := os.Stat(c.DataDir() + "/sentry_silo/silo.db"); err != nil {
		t.Errorf("embedded SQLite database not created under the data dir: %v", err)
	}
}
