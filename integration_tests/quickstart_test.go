package integration_tests

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// quickstart is caddyfile_examples/quickstart.Caddyfile running on free
// ports, as the README tells users to run it.
type quickstart struct {
	caddy *harness.Caddy
	ports map[string]*harness.Port // by the port the file names
	admin *harness.Port
	// marker stands for /tmp/caddy-silo-quickstart-de-404, whose existence
	// makes region de answer 404: a path of the test's own.
	marker string
}

// quickstartPorts are the ports the quickstart's sites listen on.
var quickstartPorts = []string{"8000", "9000", "8010", "8011", "8012", "8020"}

const quickstartMarker = "/tmp/caddy-silo-quickstart-de-404"

// startQuickstart runs the quickstart with its ports moved to reserved
// ones and its marker file moved into the test's directory.
func startQuickstart(t *testing.T) *quickstart {
	t.Helper()
	raw, err := os.ReadFile("../caddyfile_examples/quickstart.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	q := &quickstart{ports: map[string]*harness.Port{}, admin: harness.ReservePort(t), marker: filepath.Join(t.TempDir(), "de-404")}
	for _, p := range quickstartPorts {
		q.ports[p] = harness.ReservePort(t)
	}
	conf := q.rewrite(string(raw))
	// The file matcher names the marker by root and file.
	dir, file := filepath.Split(q.marker)
	conf = strings.Replace(conf, "root /tmp\n", "root "+dir+"\n", 1)
	conf = strings.Replace(conf, "try_files caddy-silo-quickstart-de-404", "try_files "+file, 1)
	if strings.Contains(conf, "caddy-silo-quickstart-de-404") {
		t.Fatal("the quickstart names its marker file in a way this test does not move")
	}
	// The quickstart's admin endpoint moves to the reserved port (the
	// admin option and its origins, in rewrite), and the harness's other
	// global options go in the global block, the one that opens on a
	// line of its own (a snippet comes before it).
	admin, others, _ := strings.Cut(harness.GlobalOptions(q.admin), "\n")
	if !strings.HasPrefix(admin, "\tadmin ") || !strings.Contains(conf, "admin "+q.admin.Addr+" {") {
		t.Fatalf("the quickstart's admin option is not where this test moves it from (localhost:2019)")
	}
	conf = strings.Replace(conf, "\n{\n", "\n{\n"+others, 1)
	q.caddy = harness.Start(t, q.admin, conf)
	return q
}

// rewrite moves the quickstart's ports and marker in s, a config or a
// README command, to the test's.
func (q *quickstart) rewrite(s string) string {
	for _, p := range quickstartPorts {
		s = strings.ReplaceAll(s, ":"+p, fmt.Sprintf(":%d", q.ports[p].Num))
	}
	s = strings.ReplaceAll(s, "localhost:2019", q.admin.Addr)
	return strings.ReplaceAll(s, quickstartMarker, q.marker)
}

// TestQuickstartRuns runs caddyfile_examples/quickstart.Caddyfile as the
// README tells users to (ports moved to free ones), checks that it stays up
// and that the demo answers as the file's comments say.
func TestQuickstartRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary; left out under -short")
	}
	q := startQuickstart(t)
	c, ports, admin := q.caddy, q.ports, q.admin

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
