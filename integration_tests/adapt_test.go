package integration_tests

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/sentrysilo/caddy-silo"
)

var update = flag.Bool("update", false, "rewrite the adapt golden files")

// adapt runs the caddyfile adapter the way `caddy adapt --pretty` does.
func adapt(t *testing.T, name string, body []byte) ([]byte, error) {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	out, warnings, err := adapter.Adapt(body, map[string]any{"filename": name})
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		t.Logf("%s: adapter warning: %s", name, w.String())
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, out, "", "\t"); err != nil {
		return nil, err
	}
	pretty.WriteByte('\n')
	return pretty.Bytes(), nil
}

// TestAdaptExamples is the golden test of every file in caddyfile_examples:
// its JSON must not change unnoticed, because operators' configs and
// autosave.json depend on it. Run with -update to accept a change.
func TestAdaptExamples(t *testing.T) {
	files, err := filepath.Glob("../caddyfile_examples/*.Caddyfile")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".Caddyfile")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := adapt(t, f, body)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			golden := filepath.Join("testdata", "adapt", name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./integration_tests -run TestAdaptExamples -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("adapted JSON of %s differs from %s:\n%s", f, golden, lineDiff(string(want), string(got)))
			}
		})
	}
}

// TestAdaptErrors checks that bad Caddyfiles fail with an error naming the
// offending line or value. Each file holds a Caddyfile, a line of ten
// dashes, then a substring the error must contain.
func TestAdaptErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/adapt_errors/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases found: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".caddyfiletest"), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, want, ok := strings.Cut(string(raw), "\n----------\n")
			if !ok {
				t.Fatalf("%s: no ---------- separator", f)
			}
			_, err = adapt(t, "Caddyfile", []byte(caddyfile))
			if err == nil {
				t.Fatalf("adapted without error; want an error containing %q", strings.TrimSpace(want))
			}
			for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
				if !strings.Contains(err.Error(), line) {
					t.Errorf("error %q does not contain %q", err, line)
				}
			}
		})
	}
}

// lineDiff shows the first differing lines, enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, wl, gl)
			if shown++; shown == 10 {
				break
			}
		}
	}
	return b.String()
}
