package silocmd

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminDialsWhatCaddyListensOn checks the admin address forms Caddy's
// admin option takes: host:port (with the Origin header the endpoint
// checks) and a unix socket with its permission bits (without one, as
// caddy reload sends none there).
func TestAdminDialsWhatCaddyListensOn(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	for _, tc := range []struct {
		name, network, listen, address, wantOrigin string
	}{
		{"tcp", "tcp", "127.0.0.1:0", "", "http://"},
		{"unix socket with permission bits", "unix", sock, "unix/" + sock + "|0600", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen(tc.network, tc.listen)
			if err != nil {
				t.Fatal(err)
			}
			origin := make(chan string, 1)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				origin <- r.Header.Get("Origin")
				io.WriteString(w, `{"pauses":[]}`)
			})}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			address := tc.address
			if address == "" {
				address = ln.Addr().String()
			}
			a, err := host{}.Admin(address, "", "")
			if err != nil {
				t.Fatal(err)
			}
			resp, err := a.Client.Get(a.URL + "/sentry_silo/pauses")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			<-origin // it reached the listener
			want := tc.wantOrigin
			if want != "" {
				want += ln.Addr().String()
			}
			if a.Origin != want {
				t.Errorf("Origin to send %q, want %q", a.Origin, want)
			}
		})
	}
}

// TestSubnetSecretFromConfig reads the secret as the app resolves it,
// {env.*} included, and names the placeholder, not a value, when it fails.
func TestSubnetSecretFromConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SILOCMD_TEST_SECRET", "from-env")
	for _, tc := range []struct {
		name, conf, want, wantErr string
	}{
		{"literal", "{\n\tsentry_silo {\n\t\tregion us http://127.0.0.1:1\n\t\tsubnet_secret lit-secret\n\t}\n}\n", "lit-secret", ""},
		{"env placeholder", "{\n\tsentry_silo {\n\t\tregion us http://127.0.0.1:1\n\t\tsubnet_secret {env.SILOCMD_TEST_SECRET}\n\t}\n}\n", "from-env", ""},
		{"unset env", "{\n\tsentry_silo {\n\t\tregion us http://127.0.0.1:1\n\t\tsubnet_secret {env.SILOCMD_TEST_UNSET}\n\t}\n}\n", "", "subnet_secret"},
		{"none", ":8080 {\n\trespond ok\n}\n", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".Caddyfile")
			if err := os.WriteFile(f, []byte(tc.conf), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := host{}.SubnetSecret(f, "caddyfile")
			if got != tc.want || (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("got %q, %v; want %q, error with %q", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
