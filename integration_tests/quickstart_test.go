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
	ports := map[string]*harness.Port{}
	for _, p := range []string{"8000", "9000", "8010", "8011"} {
		ports[p] = harness.ReservePort(t)
		conf = strings.ReplaceAll(conf, ":"+p, fmt.Sprintf(":%d", ports[p].Num))
	}
	admin := harness.ReservePort(t)
	// The global options block is the one that opens on a line of its own
	// (a snippet comes before it).
	conf = strings.Replace(conf, "\n{\n", "\n{\n"+harness.GlobalOptions(admin), 1)
	c := harness.Start(t, admin, conf)

	base := ports["8000"].URL()
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

	// A GitHub webhook of installation 555, which the quickstart's static
	// integration shares between acme (us) and beta (de): captured once
	// per region, delivered to both demo regions, which log it.
	req, _ := http.NewRequest(http.MethodPost, base+"/extensions/github/webhook/",
		strings.NewReader(`{"action":"opened","installation":{"id":555},"repository":{"id":1}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "pull_request")
	req.Header.Set("X-GitHub-Delivery", "quickstart-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("GitHub webhook: %d, want 202", resp.StatusCode)
	}
	for _, region := range []string{"us", "de"} {
		port := ports["8010"].Num
		if region == "de" {
			port = ports["8011"].Num
		}
		waitFor(t, "the webhook delivered to region "+region, 30*time.Second, func() bool {
			for _, line := range strings.Split(c.Logs(), "\n") {
				if strings.Contains(line, "handled request") && strings.Contains(line, `"uri":"/extensions/github/webhook/"`) &&
					strings.Contains(line, fmt.Sprintf(`"host":"127.0.0.1:%d"`, port)) {
					return true
				}
			}
			return false
		})
	}

	// It stays up through its drainer's whole cycle: both deliveries
	// acknowledged and recorded, not only received by the regions.
	for _, region := range []string{"us", "de"} {
		waitFor(t, "the delivery to region "+region+" recorded", 30*time.Second, func() bool {
			return metricValue(t, admin.Addr, "caddy_sentry_deliveries_total", `outcome="delivered",region="`+region+`"`) >= 1
		})
	}
	if !c.Running() {
		t.Fatalf("the quickstart exited:\n%s", c.Logs())
	}
	if _, err := os.Stat(c.DataDir() + "/sentry_silo/silo.db"); err != nil {
		t.Errorf("embedded SQLite database not created under the data dir: %v", err)
	}
}
