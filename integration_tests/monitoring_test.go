package integration_tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// The alerting rules shipped in docs/monitoring are valid Prometheus
// rules, and their unit tests (alerts_test.yml: which series fire which
// alert, with which text) pass, checked with the distribution's promtool.
func TestAlertRules(t *testing.T) {
	if testing.Short() {
		t.Skip("runs promtool; left out under -short")
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package (apt-get install prometheus), as .ci/run does")
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Join("..", "docs", "monitoring")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// Every metric the alerts and the Grafana dashboard use is one the
// modules define, so a renamed metric cannot leave a dashboard blank or
// an alert silent.
func TestMonitoringFilesNameDefinedMetrics(t *testing.T) {
	defined := definedMetrics(t)
	used := regexp.MustCompile(`caddy_sentry_[a-z_]+`)
	for _, f := range []string{"alerts.yml", "alerts_test.yml", "grafana-dashboard.json"} {
		b, err := os.ReadFile(filepath.Join("..", "docs", "monitoring", f))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, name := range used.FindAllString(string(b), -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			if !defined[base] && !seen[base] {
				seen[base] = true
				t.Errorf("%s uses %s, which no module defines (defined: %s)", f, name, strings.Join(sortedSet(defined), ", "))
			}
		}
	}
}

// definedMetrics reads the metric names out of the modules' collector
// definitions: a full Name, or Namespace, Subsystem and Name.
func definedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	full := regexp.MustCompile(`Name:\s*"(caddy_sentry_\w+)"`)
	parts := regexp.MustCompile(`Namespace:\s*"caddy",\s*Subsystem:\s*"(\w+)",\s*Name:\s*"(\w+)"`)
	out := map[string]bool{}
	err := filepath.WalkDir(filepath.Join("..", "modules"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		src := regexp.MustCompile(`\s+`).ReplaceAllString(string(b), " ")
		for _, m := range full.FindAllStringSubmatch(src, -1) {
			out[m[1]] = true
		}
		for _, m := range parts.FindAllStringSubmatch(src, -1) {
			out["caddy_"+m[1]+"_"+m[2]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d metric definitions: the patterns no longer match the modules", len(out))
	}
	return out
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
