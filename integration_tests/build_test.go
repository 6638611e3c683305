package integration_tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// wantModules are the module IDs docs/design.md fixes; other programs depend on
// them.
var wantModules = []string{
	"sentry_silo",
	"admin.api.sentry_silo",
	"http.handlers.sentry_region_route",
	"http.handlers.sentry_cred_proxy",
	"http.handlers.sentry_webhook_capture",
	"http.handlers.sentry_silo_console",
}

func assertModules(t *testing.T, bin string) {
	t.Helper()
	out, err := exec.Command(bin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("list-modules: %v\n%s", err, out)
	}
	listed := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		listed[strings.TrimSpace(l)] = true
	}
	for _, m := range wantModules {
		if !listed[m] {
			t.Errorf("%s list-modules does not show %s", bin, m)
		}
	}
}

// TestBinaryListsModules builds ./cmd/caddy (what `go build -o caddy
// ./cmd/caddy` gives) and checks that every module is in it.
func TestBinaryListsModules(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; left out under -short")
	}
	assertModules(t, harness.Binary(t))
}

// TestXcaddyStyleBuild does what `xcaddy build --with
// github.com/sentrysilo/caddy-silo=<checkout>` does, since xcaddy cannot be
// installed here: a fresh main module that requires the plugin through a
// replace directive and imports only its root package, as xcaddy's
// generated main.go does. It proves the root import alone registers
// everything, including the directive order.
func TestXcaddyStyleBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a second binary; left out under -short")
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caddyVersion := requiredVersion(t, root, "github.com/caddyserver/caddy/v2")
	gomod := "module caddy\n\ngo 1.25\n\nrequire (\n" +
		"\tgithub.com/caddyserver/caddy/v2 " + caddyVersion + "\n" +
		"\tgithub.com/sentrysilo/caddy-silo v0.0.0\n)\n\n" +
		"replace github.com/sentrysilo/caddy-silo => " + root + "\n"
	mainGo := `package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// plug in Caddy modules here
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/sentrysilo/caddy-silo"
)

func main() {
	caddycmd.Main()
}
`
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", gomod)
	write("main.go", mainGo)
	// Seed go.sum from the plugin so the module proxy is only asked for
	// what is missing, as `go mod tidy` in xcaddy would.
	if sum, err := os.ReadFile(filepath.Join(root, "go.sum")); err == nil {
		write("go.sum", string(sum))
	}
	run := func(args ...string) {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("mod", "tidy")
	bin := filepath.Join(dir, "caddy")
	run("build", "-o", bin, ".")
	assertModules(t, bin)

	// The directive order registered by the root package must be in
	// effect: the directives work without an `order` option.
	conf := filepath.Join(dir, "Caddyfile")
	write("Caddyfile", "{\n\tsentry_silo {\n\t\tregion us http://127.0.0.1:8010\n\t}\n}\n:8000 {\n\tsentry_webhook_capture\n\tsentry_cred_proxy\n\tsentry_region_route\n\treverse_proxy 127.0.0.1:9000\n}\n")
	out, err := exec.Command(bin, "adapt", "--config", conf).CombinedOutput()
	if err != nil {
		t.Fatalf("adapt with the xcaddy-style binary: %v\n%s", err, out)
	}
	js := string(out)
	c, p, r, rp := strings.Index(js, "sentry_webhook_capture"), strings.Index(js, "sentry_cred_proxy"), strings.Index(js, "sentry_region_route"), strings.Index(js, `"reverse_proxy"`)
	if !(c >= 0 && c < p && p < r && r < rp) {
		t.Errorf("handlers are not in the order capture, cred proxy, region route, reverse_proxy:\n%s", js)
	}
}

func requiredVersion(t *testing.T, root, module string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == module {
			return f[1]
		}
		if len(f) >= 3 && f[0] == "require" && f[1] == module {
			return f[2]
		}
	}
	t.Fatalf("%s not required in go.mod", module)
	return ""
}
