package integration_tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// stallingRegion is a region at the TCP level that reads a request's head
// and then stalls: an upload's body is never read, an answer's body stops
// after its first bytes. Connections are held until the test ends.
type stallingRegion struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

const stallFirstBytes = "first bytes"

func newStallingRegion(t *testing.T) *stallingRegion {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stallingRegion{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go s.serve(c)
		}
	}()
	return s
}

func (s *stallingRegion) URL() string { return "http://" + s.ln.Addr().String() }

func (s *stallingRegion) serve(c net.Conn) {
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return
	}
	if strings.HasSuffix(req.URL.Path, "/chunk-upload/") {
		if req.URL.Query().Get("pace") == "" {
			return // never reads the body: the gateway's writes fill the socket and block
		}
		// Reads the body slowly but steadily, 64 KiB every 10 ms (6.4 MB/s),
		// as a region behind a slow link would.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var n int64
		for {
			<-tick.C
			m, err := io.CopyN(io.Discard, req.Body, 64<<10)
			n += m
			if err != nil {
				break
			}
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d", len(strconv.FormatInt(n, 10)), n)
		return
	}
	// Announces 1,000 bytes and sends a few.
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n%s", stallFirstBytes)
}

// endlessBody is an upload that never ends.
type endlessBody struct{}

func (endlessBody) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'u'
	}
	return len(p), nil
}

// oneRegionGateway is the Caddyfile of a gateway with one region, us at
// regionURL, which owns the organization acme; what the route does not
// send to the region, control answers with "control". options go into
// the sentry_region_route block.
func oneRegionGateway(admin *harness.Port, regionURL, siteAddr, options string) string {
	return fmt.Sprintf(`{
%s	sentry_silo {
		storage sqlite
		region us %s
		default_region us
		organization 1 acme us
		drainer {
			off
		}
	}
}
http://%s {
	route {
		sentry_region_route {
			%s
		}
		respond "control" 200
	}
}
`, harness.GlobalOptions(admin), regionURL, siteAddr, options)
}

// A region that stalls is cut by the gateway, not waited on: an upload it
// stopped reading after upload_timeout, an answer whose body stopped after
// read_timeout (each a bound on one write or read of the region's
// connection, at most an eighth more; region.go, boundStalls), while an
// upload that takes longer than upload_timeout but keeps moving arrives
// whole.
func TestGatewayCutsStalledRegions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary; left out under -short")
	}
	region := newStallingRegion(t)
	admin, site := harness.ReservePort(t), harness.ReservePort(t)
	const (
		readTimeout   = time.Second
		uploadTimeout = 2 * time.Second
		// loadSlack covers a loaded 2-CPU machine.
		loadSlack = 5 * time.Second
	)
	caddyfile := oneRegionGateway(admin, region.URL(), site.Addr,
		fmt.Sprintf("read_timeout %s\n\t\t\tupload_timeout %s", readTimeout, uploadTimeout))
	c := harness.Start(t, admin, caddyfile)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(relTail(c.Logs(), 30))
		}
	})
	client := &http.Client{Timeout: 2 * time.Minute}

	// The bound is on each write, not on the whole body.
	t.Run("slow upload that keeps moving", func(t *testing.T) {
		const size = 24 << 20 // more than the loopback socket buffers take at once
		start := time.Now()
		resp, err := client.Post(site.URL()+"/api/0/organizations/acme/chunk-upload/?pace=steady", "application/octet-stream",
			io.LimitReader(endlessBody{}, size))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != strconv.Itoa(size) {
			t.Fatalf("after %v: %d %q, want 200 with the region having read %d bytes", time.Since(start), resp.StatusCode, body, size)
		}
		if took := time.Since(start); took < uploadTimeout {
			t.Fatalf("the upload took %v, under upload_timeout %v: the test proves nothing", took, uploadTimeout)
		}
	})

	tests := []struct {
		name   string
		bound  time.Duration // the gateway's bound on the stalled call
		stalls func() error  // returns when the gateway gave up
	}{
		{"upload the region stopped reading", uploadTimeout, func() error {
			resp, err := client.Post(site.URL()+"/api/0/organizations/acme/chunk-upload/", "application/octet-stream", io.NopCloser(endlessBody{}))
			if err != nil {
				return nil // cut while sending: the gateway closed the connection
			}
			defer resp.Body.Close()
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode < 500 {
				return fmt.Errorf("answered %d, want a 5xx or a cut connection", resp.StatusCode)
			}
			return nil
		}},
		{"answer whose body stopped midway", readTimeout, func() error {
			resp, err := client.Get(site.URL() + "/api/0/organizations/acme/events/")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err == nil {
				return fmt.Errorf("the body ended cleanly after %d bytes, want it cut", len(body))
			}
			if string(body) != stallFirstBytes {
				return fmt.Errorf("got %q before the cut, want %q", body, stallFirstBytes)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			if err := tt.stalls(); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if took < tt.bound || took > tt.bound+loadSlack {
				t.Fatalf("cut after %v, want after %v (+%v for a loaded machine)", took, tt.bound, loadSlack)
			}
		})
	}
}
