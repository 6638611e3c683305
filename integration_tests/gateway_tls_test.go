package integration_tests

import (
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// TestGatewayHTTPSRegion: a region over https is proxied, over HTTP/2
// where the region offers it, and an answer it never starts is cut after
// read_timeout. Over https the transport's per-request header timeout
// bounds that wait (HTTP/2 carries many requests on one connection, whose
// reads do not tell one stream's wait from another's), beside the stall
// bound on the connection's reads and writes.
func TestGatewayHTTPSRegion(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary; left out under -short")
	}
	release := make(chan struct{})
	region := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/0/organizations/acme/events/" {
			select { // never answers
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		fmt.Fprintf(w, "%s %s", r.Proto, r.Header.Get("X-Apigateway"))
	}))
	region.EnableHTTP2 = true
	region.StartTLS()
	t.Cleanup(func() { close(release); region.Close() })

	// The gateway process trusts the region's certificate as a system
	// root (Go reads SSL_CERT_FILE).
	roots := filepath.Join(t.TempDir(), "region.pem")
	if err := os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: region.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	const readTimeout = time.Second
	admin, site := harness.ReservePort(t), harness.ReservePort(t)
	caddyfile := oneRegionGateway(admin, region.URL, site.Addr, fmt.Sprintf("read_timeout %s", readTimeout))
	c := harness.Start(t, admin, caddyfile, "SSL_CERT_FILE="+roots)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(relTail(c.Logs(), 30))
		}
	})
	client := &http.Client{Timeout: time.Minute}

	resp, err := client.Get(site.URL() + "/api/0/organizations/acme/issues/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "HTTP/2.0 true" {
		t.Fatalf("%d %q, want 200 from the region over HTTP/2 with X-Apigateway", resp.StatusCode, body)
	}

	start := time.Now()
	resp, err = client.Get(site.URL() + "/api/0/organizations/acme/events/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	const loadSlack = 5 * time.Second // a loaded 2-CPU machine
	if resp.StatusCode != http.StatusGatewayTimeout || took < readTimeout || took > readTimeout+loadSlack {
		t.Fatalf("%d %q after %v, want 504 after read_timeout %v", resp.StatusCode, body, took, readTimeout)
	}
}
