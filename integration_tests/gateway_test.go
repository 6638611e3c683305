package integration_tests

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The gateway fixture serves every case below from one binary: static
// organizations acme (1, us) and beta (2, de), and in SQLite a Sentry App
// "beta-app" (7) owned by beta, its installation "inst-beta", and the
// project key "pkde" in de.
func TestGateway(t *testing.T) {
	g := startGateway(t, gatewayOptions{routeBlock: "\t\tread_timeout 1s\n\t\tupload_timeout 4s\n\t\tmax_concurrency 4\n\t\tbreaker 3 60s"})
	db := g.db(t)
	mustExec(t, db, `INSERT INTO sentry_sentryapp (id, slug, owner_id) VALUES (7, 'beta-app', 2)`)
	mustExec(t, db, `INSERT INTO sentry_sentryappinstallation (uuid, organization_id, sentry_app_id) VALUES ('inst-beta', 2, 7)`)
	mustExec(t, db, `INSERT INTO sentry_projectkeymapping (public_key, region_name) VALUES ('pkde', 'de')`)

	reset := func() {
		for _, f := range []*fakeUpstream{g.us, g.de, g.flaky, g.slow, g.control} {
			f.reset()
		}
	}

	// One request per row of the route table, with a path built from the
	// row's pattern: keys name things that live in de, so a proxied row
	// lands in de, a control row in control, a legacy row in us.
	targets := map[string]*fakeUpstream{"us": g.us, "de": g.de, "control": g.control}
	t.Run("route table", func(t *testing.T) {
		for i, row := range routeTableRows {
			t.Run(fmt.Sprintf("%03d %s", i, row.pattern), func(t *testing.T) {
				want := targets[row.to]
				path, _, _ := strings.Cut(row.uri, "?")
				reset()
				resp, body := g.get(t, row.uri)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: %d %s", row.uri, resp.StatusCode, body)
				}
				if string(body) != "hello from "+want.name {
					t.Fatalf("GET %s went to %q, want %s", row.uri, body, want.name)
				}
				seen := want.last(t)
				if seen.RequestURI != row.uri {
					t.Fatalf("upstream saw %q, want %q", seen.RequestURI, row.uri)
				}
				proxied := want != g.control
				if got := seen.Header.Get("X-Apigateway"); (got == "true") != proxied {
					t.Fatalf("X-Apigateway %q at %s", got, want.name)
				}
				proxyURL := resp.Header.Get("X-Sentry-Proxy-URL")
				if proxied {
					if seen.Host != want.Host() {
						t.Fatalf("Host %q, want %q", seen.Host, want.Host())
					}
					if proxyURL != want.URL()+path {
						t.Fatalf("X-Sentry-Proxy-URL %q, want %q", proxyURL, want.URL()+path)
					}
				} else if proxyURL != "" {
					t.Fatalf("control answer carries X-Sentry-Proxy-URL %q", proxyURL)
				}
			})
		}
	})

	t.Run("case 1 query verbatim, X-Apigateway, X-Sentry-Proxy-URL", func(t *testing.T) {
		reset()
		const uri = "/api/0/organizations/beta/issues/?query=is%3Aunresolved&x=1&x=2"
		resp, body := g.get(t, uri)
		if resp.StatusCode != 200 || string(body) != "hello from de" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		seen := g.de.last(t)
		if seen.RequestURI != uri || seen.Header.Get("X-Apigateway") != "true" {
			t.Fatalf("upstream saw %q X-Apigateway=%q", seen.RequestURI, seen.Header.Get("X-Apigateway"))
		}
		if got, want := resp.Header.Get("X-Sentry-Proxy-URL"), g.de.URL()+"/api/0/organizations/beta/issues/"; got != want {
			t.Fatalf("X-Sentry-Proxy-URL %q, want %q", got, want)
		}
	})

	t.Run("case 2 organization by id", func(t *testing.T) {
		reset()
		if _, body := g.get(t, "/api/0/organizations/2/projects/"); string(body) != "hello from de" {
			t.Fatalf("went to %q", body)
		}
	})

	t.Run("case 3 unknown organization", func(t *testing.T) {
		reset()
		resp, body := g.get(t, "/api/0/organizations/nope/issues/")
		wantAPIError(t, resp, body, 404, "Not found")
		assertNoUpstreamCall(t, g)
	})

	t.Run("case 4 control endpoint", func(t *testing.T) {
		reset()
		if _, body := g.get(t, "/api/0/organizations/acme/integrations/"); string(body) != "hello from control" {
			t.Fatalf("went to %q", body)
		}
	})

	t.Run("case 5 redirect not followed", func(t *testing.T) {
		reset()
		g.us.respond(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://zombo.com", http.StatusFound)
		})
		resp, _ := g.get(t, "/api/0/organizations/acme/")
		if resp.StatusCode != 302 || resp.Header.Get("Location") != "https://zombo.com" {
			t.Fatalf("%d Location=%q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if n := len(g.us.requests()); n != 1 {
			t.Fatalf("us saw %d requests", n)
		}
	})

	t.Run("cases 6 and 7 request headers", func(t *testing.T) {
		reset()
		h := http.Header{
			"Connection":        {"keep-alive, X-Hop"},
			"X-Hop":             {"drop me"},
			"Keep-Alive":        {"timeout=5"},
			"X-Forwarded-Proto": {"https"},
			"Content-Encoding":  {"zstd"},
			"Cookie":            {"session=abc"},
			"Authorization":     {"Bearer t0ken"},
			"User-Agent":        {"sentry-cli/2.0"},
			"Content-Type":      {"application/octet-stream"},
		}
		payload := []byte("\x28\xb5\x2f\xfd compressed bytes, kept as they are")
		resp, _ := g.do(t, http.MethodPost, "/api/0/projects/acme/web/preprod/snapshots/", h, bytes.NewReader(payload))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		seen := g.us.last(t)
		for _, k := range []string{"X-Hop", "Keep-Alive", "X-Forwarded-Proto", "Transfer-Encoding"} {
			if v, ok := seen.Header[k]; ok {
				t.Errorf("%s reached the region: %q", k, v)
			}
		}
		if v := seen.Header.Get("Connection"); strings.Contains(v, "X-Hop") {
			t.Errorf("Connection reached the region: %q", v)
		}
		for k, want := range map[string]string{
			"Cookie": "session=abc", "Authorization": "Bearer t0ken", "User-Agent": "sentry-cli/2.0",
			"Content-Encoding": "zstd", "X-Apigateway": "true",
		} {
			if got := seen.Header.Get(k); got != want {
				t.Errorf("%s = %q at the region, want %q", k, got, want)
			}
		}
		sum := sha256.Sum256(payload)
		if seen.BodyLen != len(payload) || seen.BodySHA != hex.EncodeToString(sum[:]) {
			t.Errorf("body changed: %d bytes", seen.BodyLen)
		}
	})

	t.Run("case 8 response headers", func(t *testing.T) {
		reset()
		big := strings.Repeat("0123456789", 100_000)
		g.de.respond(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			w.Header().Set("X-Sentry-Subnet-Signature", "v0=secret")
			w.Header().Set("X-Sentry-Subnet-Base-URL", "https://x")
			w.Header().Set("X-Sentry-Proxy-URL", "http://spoofed/")
			w.Header().Set("Test", "header")
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "b=2")
			w.WriteHeader(201)
			io.WriteString(w, big)
		})
		resp, body := g.get(t, "/api/0/organizations/beta/")
		if resp.StatusCode != 201 || string(body) != big {
			t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
		}
		if resp.Header.Get("Test") != "header" || strings.Join(resp.Header.Values("Set-Cookie"), "|") != "a=1|b=2" {
			t.Fatalf("headers lost: %v", resp.Header)
		}
		for k := range resp.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-sentry-subnet-") {
				t.Fatalf("%s reached the client", k)
			}
		}
		if got := resp.Header.Values("X-Sentry-Proxy-URL"); len(got) != 1 || got[0] != g.de.URL()+"/api/0/organizations/beta/" {
			t.Fatalf("X-Sentry-Proxy-URL %q", got)
		}
	})

	t.Run("case 9 20 MB upload arrives byte-identical", func(t *testing.T) {
		reset()
		payload := make([]byte, 20<<20)
		if _, err := rand.Read(payload); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		buf.WriteString("--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"chunk\"\r\nContent-Type: application/octet-stream\r\n\r\n")
		buf.Write(payload)
		buf.WriteString("\r\n--XyZ--\r\n")
		want := sha256.Sum256(buf.Bytes())
		size := buf.Len()
		resp, body := g.do(t, http.MethodPost, "/api/0/organizations/acme/chunk-upload/",
			http.Header{"Content-Type": {"multipart/form-data; boundary=XyZ"}}, &buf)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		seen := g.us.last(t)
		if seen.BodyLen != size || seen.BodySHA != hex.EncodeToString(want[:]) {
			t.Fatalf("region got %d bytes (sha %s), sent %d", seen.BodyLen, seen.BodySHA, size)
		}
	})

	t.Run("case 9 uploads get upload_timeout", func(t *testing.T) {
		reset()
		g.slow.respond(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(2 * time.Second) // over read_timeout 1s, under upload_timeout 4s
			io.WriteString(w, "done")
		})
		resp, body := g.do(t, http.MethodPost, "/api/0/organizations/slow-org/chunk-upload/", nil, strings.NewReader("chunk"))
		if resp.StatusCode != 200 || string(body) != "done" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})

	t.Run("case 10 timeout", func(t *testing.T) {
		reset()
		g.slow.respond(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		})
		start := time.Now()
		resp, body := g.get(t, "/api/0/organizations/slow-org/issues/")
		wantAPIError(t, resp, body, 504, "Downstream timeout")
		// The bound is the behaviour: read_timeout 1s, not the region's
		// 5s; 3s of margin for a loaded machine.
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("answered after %v with read_timeout 1s", d)
		}
	})

	t.Run("case 11 connection refused", func(t *testing.T) {
		reset()
		resp, body := g.get(t, "/api/0/organizations/down-org/issues/")
		wantAPIError(t, resp, body, 503, "Downstream service unavailable")
	})

	t.Run("case 12 relays pinned", func(t *testing.T) {
		reset()
		if _, body := g.get(t, "/api/0/relays/projectconfigs/?version=3"); string(body) != "hello from us" {
			t.Fatalf("went to %q", body)
		}
		if got := g.us.last(t).RequestURI; got != "/api/0/relays/projectconfigs/?version=3" {
			t.Fatalf("us saw %q", got)
		}
	})

	t.Run("case 13 legacy issue pinned", func(t *testing.T) {
		reset()
		if _, body := g.get(t, "/api/0/issues/123/events/"); string(body) != "hello from us" {
			t.Fatalf("went to %q", body)
		}
	})

	for _, c := range []struct {
		name, dsn string
		status    int
		to        string
		detail    string
	}{
		{"case 14 error page DSN in de", "https://k@o1.ingest.de.sentry.io/1", 200, "de", ""},
		{"case 15 error page DSN without region", "https://k@o1.ingest.sentry.io/1", 200, "us", ""},
		{"case 16 error page DSN of unknown region", "https://k@o1.ingest.zz.sentry.io/1", 404, "", "Not found"},
		{"case 17 error page without DSN", "", 400, "", "Invalid request"},
		{"error page DSN of another host", "https://k@o1.ingest.de.example.com/1", 400, "", "Invalid request"},
	} {
		t.Run(c.name, func(t *testing.T) {
			reset()
			path := "/api/embed/error-page/"
			if c.dsn != "" {
				path += "?dsn=" + c.dsn + "&eventId=abc"
			}
			resp, body := g.get(t, path)
			if c.status != 200 {
				wantAPIError(t, resp, body, c.status, c.detail)
				assertNoUpstreamCall(t, g)
				return
			}
			if string(body) != "hello from "+c.to {
				t.Fatalf("went to %q", body)
			}
		})
	}

	t.Run("case 19 Sentry App installation", func(t *testing.T) {
		reset()
		if _, body := g.get(t, "/api/0/sentry-app-installations/inst-beta/external-requests/?projectId=1"); string(body) != "hello from de" {
			t.Fatalf("went to %q", body)
		}
		resp, body := g.get(t, "/api/0/sentry-app-installations/nope/external-requests/")
		wantAPIError(t, resp, body, 404, "Not found")
		// The installation's own paths are control endpoints.
		if _, body := g.get(t, "/api/0/sentry-app-installations/inst-beta/authorizations/"); string(body) != "hello from control" {
			t.Fatalf("authorizations went to %q", body)
		}
	})

	t.Run("Sentry App by slug and id", func(t *testing.T) {
		reset()
		for _, p := range []string{"/api/0/sentry-apps/beta-app/requests/", "/api/0/sentry-apps/7/interaction/"} {
			if _, body := g.get(t, p); string(body) != "hello from de" {
				t.Fatalf("%s went to %q", p, body)
			}
		}
		resp, body := g.get(t, "/api/0/sentry-apps/nope/requests/")
		wantAPIError(t, resp, body, 404, "Not found")
	})

	t.Run("JS SDK loader by public key", func(t *testing.T) {
		reset()
		if _, body := g.get(t, "/js-sdk-loader/pkde.min.js"); string(body) != "hello from de" {
			t.Fatalf("went to %q", body)
		}
		// An unknown key falls through to control, as in Sentry.
		if _, body := g.get(t, "/js-sdk-loader/unknown.js"); string(body) != "hello from control" {
			t.Fatalf("unknown key went to %q", body)
		}
	})

	t.Run("case 20 admin cells", func(t *testing.T) {
		reset()
		if _, body := g.get(t, "/api/0/_admin/cells/de/x"); string(body) != "hello from de" {
			t.Fatalf("went to %q", body)
		}
		resp, body := g.get(t, "/api/0/_admin/cells/xx/x")
		wantAPIError(t, resp, body, 404, "Not found")
	})

	t.Run("case 21 X-Forwarded-For appended", func(t *testing.T) {
		reset()
		g.do(t, http.MethodGet, "/api/0/organizations/acme/", http.Header{"X-Forwarded-For": {"1.1.1.1"}}, nil)
		if got := g.us.last(t).Header.Get("X-Forwarded-For"); got != "1.1.1.1, 127.0.0.1" {
			t.Fatalf("X-Forwarded-For %q", got)
		}
		g.get(t, "/api/0/organizations/acme/")
		seen := g.us.last(t)
		if got := seen.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
			t.Fatalf("X-Forwarded-For %q", got)
		}
		if _, ok := seen.Header["X-Forwarded-Proto"]; ok {
			t.Fatalf("X-Forwarded-Proto added: %q", seen.Header["X-Forwarded-Proto"])
		}
		if _, ok := seen.Header["X-Forwarded-Host"]; ok {
			t.Fatalf("X-Forwarded-Host added: %q", seen.Header["X-Forwarded-Host"])
		}
	})

	t.Run("case 22 breaker", func(t *testing.T) {
		reset()
		g.flaky.respond(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "region is sad")
		})
		// breaker 3: four failures pass through unchanged, then the
		// region is cut off.
		for i := range 4 {
			resp, body := g.get(t, "/api/0/organizations/flaky-org/issues/")
			if resp.StatusCode != 503 || string(body) != "region is sad" {
				t.Fatalf("failure %d: %d %s", i+1, resp.StatusCode, body)
			}
		}
		resp, body := g.get(t, "/api/0/organizations/flaky-org/issues/")
		wantAPIError(t, resp, body, 503, "Downstream service unavailable")
		if n := len(g.flaky.requests()); n != 4 {
			t.Fatalf("flaky contacted %d times, want 4", n)
		}
		// Other regions are unaffected.
		if resp, body := g.get(t, "/api/0/organizations/beta/"); resp.StatusCode != 200 || string(body) != "hello from de" {
			t.Fatalf("de: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("case 23 concurrency cap", func(t *testing.T) {
		reset()
		release := make(chan struct{})
		var inside sync.WaitGroup
		inside.Add(4)
		g.slow.respond(func(w http.ResponseWriter, r *http.Request) {
			inside.Done()
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
			io.WriteString(w, "ok")
		})
		// The blocked requests use their own client: the cap is per
		// region, not per connection.
		var wg sync.WaitGroup
		codes := make([]int, 4)
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := http.Get(g.base + "/api/0/organizations/slow-org/block/")
				if err != nil {
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				codes[i] = resp.StatusCode
			}()
		}
		waited := make(chan struct{})
		go func() { inside.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			close(release)
			t.Fatal("the four requests never reached the region")
		}
		resp, body := g.get(t, "/api/0/organizations/slow-org/block/")
		wantAPIError(t, resp, body, 429, "Too many requests")
		// Another region is not limited by slow's cap.
		if resp, _ := g.get(t, "/api/0/organizations/acme/"); resp.StatusCode != 200 {
			t.Fatalf("us: %d", resp.StatusCode)
		}
		close(release)
		wg.Wait()
		for i, c := range codes {
			if c != 200 {
				t.Fatalf("blocked request %d ended with %d", i, c)
			}
		}
	})

	t.Run("a stuck region does not slow another", func(t *testing.T) {
		reset()
		release := make(chan struct{})
		g.slow.respond(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		})
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// An upload route: stuck for upload_timeout (4s).
				if resp, err := http.Post(g.base+"/api/0/organizations/slow-org/chunk-upload/", "text/plain", strings.NewReader("x")); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
		waitFor(t, "four requests stuck in slow", 5*time.Second, func() bool { return len(g.slow.requests()) == 4 })
		for i := range 20 {
			start := time.Now()
			resp, _ := g.get(t, "/api/0/organizations/acme/")
			// Generous: a loaded test machine stalls for hundreds of
			// milliseconds; a request blocked behind slow would wait
			// for its 4s upload timeout.
			if d := time.Since(start); resp.StatusCode != 200 || d > 2500*time.Millisecond {
				t.Fatalf("us request %d: %d after %v while slow is stuck", i, resp.StatusCode, d)
			}
		}
		close(release)
		wg.Wait()
	})

	t.Run("streamed response", func(t *testing.T) {
		reset()
		proceed := make(chan struct{})
		g.de.respond(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "first line\n")
			w.(http.Flusher).Flush()
			select {
			case <-proceed:
			case <-time.After(10 * time.Second):
			}
			io.WriteString(w, "second line\n")
		})
		resp, err := g.client.Get(g.base + "/api/0/organizations/beta/events/stream/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		got := make(chan string, 1)
		go func() {
			line, _ := br.ReadString('\n')
			got <- line
		}()
		select {
		case line := <-got:
			if line != "first line\n" {
				t.Fatalf("first line %q", line)
			}
		case <-time.After(5 * time.Second):
			close(proceed)
			t.Fatal("the first bytes did not arrive before the region finished")
		}
		close(proceed)
		rest, _ := io.ReadAll(br)
		if string(rest) != "second line\n" {
			t.Fatalf("rest %q", rest)
		}
	})

	t.Run("streamed response of known length", func(t *testing.T) {
		// A region that announces its length and then trickles the body
		// (a long poll, a slow export) streams too: the first bytes must
		// not wait in a buffer for the rest.
		reset()
		proceed := make(chan struct{})
		g.de.respond(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len("first line\nsecond line\n")))
			io.WriteString(w, "first line\n")
			w.(http.Flusher).Flush()
			select {
			case <-proceed:
			case <-time.After(10 * time.Second):
			}
			io.WriteString(w, "second line\n")
		})
		// The head and the first line must both come while the region
		// holds the rest back.
		type first struct {
			resp *http.Response
			br   *bufio.Reader
			line string
			err  error
		}
		got := make(chan first, 1)
		go func() {
			resp, err := g.client.Get(g.base + "/api/0/organizations/beta/events/export/")
			if err != nil {
				got <- first{err: err}
				return
			}
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			got <- first{resp, br, line, err}
		}()
		var f first
		select {
		case f = <-got:
		case <-time.After(5 * time.Second):
			close(proceed)
			t.Fatal("the head and first bytes did not arrive before the region finished")
		}
		close(proceed)
		if f.err != nil {
			t.Fatal(f.err)
		}
		defer f.resp.Body.Close()
		if f.resp.ContentLength != int64(len("first line\nsecond line\n")) || f.line != "first line\n" {
			t.Fatalf("Content-Length %d, first line %q", f.resp.ContentLength, f.line)
		}
		rest, _ := io.ReadAll(f.br)
		if string(rest) != "second line\n" {
			t.Fatalf("rest %q", rest)
		}
	})

	t.Run("slug rename seen after the cache TTL", func(t *testing.T) {
		reset()
		mustExec(t, db, `INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES (60, 'gamma', 'de', 0)`)
		if _, body := g.get(t, "/api/0/organizations/gamma/issues/"); string(body) != "hello from de" {
			t.Fatalf("gamma went to %q", body)
		}
		// The organization is renamed and moved to us.
		mustExec(t, db, `UPDATE sentry_organizationmapping SET slug = 'gamma-two', region_name = 'us' WHERE organization_id = 60`)
		// The old slug's cached answer (directory_cache 1s 1s) serves
		// until it expires; polled, with a bound well past the TTL.
		waitFor(t, "the old slug's cached answer to expire", 10*time.Second, func() bool {
			resp, _ := g.get(t, "/api/0/organizations/gamma/issues/")
			return resp.StatusCode == http.StatusNotFound
		})
		if _, body := g.get(t, "/api/0/organizations/gamma-two/issues/"); string(body) != "hello from us" {
			t.Fatalf("gamma-two went to %q", body)
		}
		if _, body := g.get(t, "/api/0/organizations/60/issues/"); string(body) != "hello from us" {
			t.Fatalf("id 60 went to %q", body)
		}
		resp, body := g.get(t, "/api/0/organizations/gamma/issues/")
		wantAPIError(t, resp, body, 404, "Not found")
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get("http://" + g.c.AdminAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, want := range []string{
			`caddy_sentry_gateway_requests_total{outcome="ok",region="de"}`,
			`caddy_sentry_gateway_requests_total{outcome="breaker_open",region="flaky"}`,
			`caddy_sentry_gateway_requests_total{outcome="overloaded",region="slow"}`,
			`caddy_sentry_gateway_requests_total{outcome="not_found",region="none"}`,
			`caddy_sentry_gateway_request_duration_seconds_bucket{outcome="ok",region="us"`,
		} {
			if !strings.Contains(string(b), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})

	t.Run("logs carry no secrets", func(t *testing.T) {
		logs := g.c.Logs()
		for _, secret := range []string{"t0ken", "session=abc", "v0=secret"} {
			if strings.Contains(logs, secret) {
				t.Errorf("logs contain %q", secret)
			}
		}
	})
}

// routeTableRows has one request per row of the gateway's route table
// (§1.8 in order, plus the Sentry App and JS SDK loader rows), built from
// the row's pattern: keys name things that live in de, so an organization
// row lands in de, a control carve-out in control (even for a real
// organization), a legacy row in the default region us.
var routeTableRows = []struct{ pattern, uri, to string }{
	{"/api/0/organizations/{key}/integrations/coding-agents", "/api/0/organizations/beta/integrations/coding-agents/", "de"},
	{"/api/0/organizations/*/api-keys/**", "/api/0/organizations/beta/api-keys/sub/path/", "control"},
	{"/api/0/organizations/*/audit-logs", "/api/0/organizations/beta/audit-logs/", "control"},
	{"/api/0/organizations/*/broadcasts", "/api/0/organizations/beta/broadcasts/", "control"},
	{"/api/0/organizations/*/data-secrecy", "/api/0/organizations/beta/data-secrecy/", "control"},
	{"/api/0/organizations/*/integrations", "/api/0/organizations/beta/integrations/", "control"},
	{"/api/0/organizations/*/integrations/*", "/api/0/organizations/beta/integrations/beta/", "control"},
	{"/api/0/organizations/*/integrations/*/channel-validate", "/api/0/organizations/beta/integrations/beta/channel-validate/", "control"},
	{"/api/0/organizations/*/integrations/*/channels", "/api/0/organizations/beta/integrations/beta/channels/", "control"},
	{"/api/0/organizations/*/integrations/*/repo-sync", "/api/0/organizations/beta/integrations/beta/repo-sync/", "control"},
	{"/api/0/organizations/*/integrations/direct-enable/**", "/api/0/organizations/beta/integrations/direct-enable/sub/path/", "control"},
	{"/api/0/organizations/*/intercom-jwt", "/api/0/organizations/beta/intercom-jwt/", "control"},
	{"/api/0/organizations/*/monitoring-providers/**", "/api/0/organizations/beta/monitoring-providers/sub/path/", "control"},
	{"/api/0/organizations/*/org-auth-tokens/**", "/api/0/organizations/beta/org-auth-tokens/sub/path/", "control"},
	{"/api/0/organizations/*/pipeline/*", "/api/0/organizations/beta/pipeline/beta/", "control"},
	{"/api/0/organizations/*/sentry-app-components", "/api/0/organizations/beta/sentry-app-components/", "control"},
	{"/api/0/organizations/*/sentry-app-installations/**", "/api/0/organizations/beta/sentry-app-installations/sub/path/", "control"},
	{"/api/0/organizations/*/sentry-apps/**", "/api/0/organizations/beta/sentry-apps/sub/path/", "control"},
	{"/api/0/organizations/{key}/*/files/dsyms", "/api/0/organizations/beta/beta/files/dsyms/", "de"},
	{"/api/0/organizations/{key}/*/files/installablepreprodartifact/*", "/api/0/organizations/beta/beta/files/installablepreprodartifact/beta/", "de"},
	{"/api/0/organizations/{key}/*/files/preprodartifacts/*", "/api/0/organizations/beta/beta/files/preprodartifacts/beta/", "de"},
	{"/api/0/organizations/{key}/*/releases/*/files", "/api/0/organizations/beta/beta/releases/beta/files/", "de"},
	{"/api/0/organizations/{key}/chunk-upload", "/api/0/organizations/beta/chunk-upload/", "de"},
	{"/api/0/organizations/{key}/objectstore/**", "/api/0/organizations/beta/objectstore/sub/path/", "de"},
	{"/api/0/organizations/{key}/preprodartifacts/*/size-analysis", "/api/0/organizations/beta/preprodartifacts/beta/size-analysis/", "de"},
	{"/api/0/organizations/{key}/preprodartifacts/snapshots/*/archive", "/api/0/organizations/beta/preprodartifacts/snapshots/beta/archive/", "de"},
	{"/api/0/organizations/{key}/releases/*/files", "/api/0/organizations/beta/releases/beta/files/", "de"},
	{"/api/0/projects/{key}/*/files/dsyms", "/api/0/projects/beta/beta/files/dsyms/", "de"},
	{"/api/0/projects/{key}/*/files/installablepreprodartifact/*", "/api/0/projects/beta/beta/files/installablepreprodartifact/beta/", "de"},
	{"/api/0/projects/{key}/*/files/preprodartifacts/*", "/api/0/projects/beta/beta/files/preprodartifacts/beta/", "de"},
	{"/api/0/projects/{key}/*/releases/*/files", "/api/0/projects/beta/beta/releases/beta/files/", "de"},
	{"/api/0/projects/{key}/*/preprodartifacts/snapshots/*/download", "/api/0/projects/beta/beta/preprodartifacts/snapshots/beta/download/", "de"},
	{"/api/0/_admin/customers/{key}/**", "/api/0/_admin/customers/beta/sub/path/", "de"},
	{"/api/0/customers/{key}/**", "/api/0/customers/beta/sub/path/", "de"},
	{"/api/0/internal-stats/{key}/**", "/api/0/internal-stats/beta/sub/path/", "de"},
	{"/api/0/organizations/{key}/**", "/api/0/organizations/beta/sub/path/", "de"},
	{"/api/0/projects/{key}/**", "/api/0/projects/beta/sub/path/", "de"},
	{"/api/0/teams/{key}/**", "/api/0/teams/beta/sub/path/", "de"},
	{"/organizations/{key}/billing/**", "/organizations/beta/billing/sub/path/", "de"},
	{"/organizations/{key}/issues/*/events/*/json", "/organizations/beta/issues/beta/events/beta/json/", "de"},
	{"/organizations/{key}/payments/**", "/organizations/beta/payments/sub/path/", "de"},
	{"/organizations/{key}/projects/*/events/*", "/organizations/beta/projects/beta/events/beta/", "de"},
	{"/organizations/{key}/projects/*/issues/*/tags/*/export", "/organizations/beta/projects/beta/issues/beta/tags/beta/export/", "de"},
	{"/plugins/bitbucket/organizations/{key}/webhook", "/plugins/bitbucket/organizations/beta/webhook/", "de"},
	{"/plugins/github/organizations/{key}/webhook", "/plugins/github/organizations/beta/webhook/", "de"},
	{"/team-avatar/{key}/**", "/team-avatar/beta/sub/path/", "de"},
	{"/toolbar/{key}/**", "/toolbar/beta/sub/path/", "de"},
	{"/api/0/_admin/cells/{key}/**", "/api/0/_admin/cells/de/sub/path/", "de"},
	{"/api/embed/error-page", "/api/embed/error-page/?dsn=https://k@o1.ingest.de.sentry.io/1", "de"},
	{"/api/0/sentry-app-installations/{key}/external-requests", "/api/0/sentry-app-installations/inst-beta/external-requests/", "de"},
	{"/api/0/sentry-app-installations/{key}/external-issue-actions", "/api/0/sentry-app-installations/inst-beta/external-issue-actions/", "de"},
	{"/api/0/sentry-app-installations/{key}/external-issues", "/api/0/sentry-app-installations/inst-beta/external-issues/", "de"},
	{"/api/0/sentry-app-installations/{key}/external-issues/*", "/api/0/sentry-app-installations/inst-beta/external-issues/beta/", "de"},
	{"/api/0/sentry-apps/{key}/requests", "/api/0/sentry-apps/beta-app/requests/", "de"},
	{"/api/0/sentry-apps/{key}/interaction", "/api/0/sentry-apps/beta-app/interaction/", "de"},
	{"/js-sdk-loader/{key}", "/js-sdk-loader/pkde.min.js", "de"},
	{"/api/0/accept-transfer", "/api/0/accept-transfer/", "us"},
	{"/api/0/groups/*", "/api/0/groups/beta/", "us"},
	{"/api/0/groups/*/activities", "/api/0/groups/beta/activities/", "us"},
	{"/api/0/groups/*/attachments", "/api/0/groups/beta/attachments/", "us"},
	{"/api/0/groups/*/autofix/**", "/api/0/groups/beta/autofix/sub/path/", "us"},
	{"/api/0/groups/*/comments/**", "/api/0/groups/beta/comments/sub/path/", "us"},
	{"/api/0/groups/*/current-release", "/api/0/groups/beta/current-release/", "us"},
	{"/api/0/groups/*/events/**", "/api/0/groups/beta/events/sub/path/", "us"},
	{"/api/0/groups/*/external-issues/**", "/api/0/groups/beta/external-issues/sub/path/", "us"},
	{"/api/0/groups/*/hashes", "/api/0/groups/beta/hashes/", "us"},
	{"/api/0/groups/*/integrations/**", "/api/0/groups/beta/integrations/sub/path/", "us"},
	{"/api/0/groups/*/notes/**", "/api/0/groups/beta/notes/sub/path/", "us"},
	{"/api/0/groups/*/plugin/**", "/api/0/groups/beta/plugin/sub/path/", "us"},
	{"/api/0/groups/*/plugins/**", "/api/0/groups/beta/plugins/sub/path/", "us"},
	{"/api/0/groups/*/related-issues", "/api/0/groups/beta/related-issues/", "us"},
	{"/api/0/groups/*/reprocessing", "/api/0/groups/beta/reprocessing/", "us"},
	{"/api/0/groups/*/similar-issues-embeddings", "/api/0/groups/beta/similar-issues-embeddings/", "us"},
	{"/api/0/groups/*/similar", "/api/0/groups/beta/similar/", "us"},
	{"/api/0/groups/*/stats", "/api/0/groups/beta/stats/", "us"},
	{"/api/0/groups/*/summarize", "/api/0/groups/beta/summarize/", "us"},
	{"/api/0/groups/*/tags/**", "/api/0/groups/beta/tags/sub/path/", "us"},
	{"/api/0/groups/*/user-feedback", "/api/0/groups/beta/user-feedback/", "us"},
	{"/api/0/groups/*/user-reports", "/api/0/groups/beta/user-reports/", "us"},
	{"/api/0/issues/*", "/api/0/issues/beta/", "us"},
	{"/api/0/issues/*/activities", "/api/0/issues/beta/activities/", "us"},
	{"/api/0/issues/*/attachments", "/api/0/issues/beta/attachments/", "us"},
	{"/api/0/issues/*/autofix/**", "/api/0/issues/beta/autofix/sub/path/", "us"},
	{"/api/0/issues/*/comments/**", "/api/0/issues/beta/comments/sub/path/", "us"},
	{"/api/0/issues/*/current-release", "/api/0/issues/beta/current-release/", "us"},
	{"/api/0/issues/*/events/**", "/api/0/issues/beta/events/sub/path/", "us"},
	{"/api/0/issues/*/external-issues/**", "/api/0/issues/beta/external-issues/sub/path/", "us"},
	{"/api/0/issues/*/hashes", "/api/0/issues/beta/hashes/", "us"},
	{"/api/0/issues/*/integrations/**", "/api/0/issues/beta/integrations/sub/path/", "us"},
	{"/api/0/issues/*/notes/**", "/api/0/issues/beta/notes/sub/path/", "us"},
	{"/api/0/issues/*/plugin/**", "/api/0/issues/beta/plugin/sub/path/", "us"},
	{"/api/0/issues/*/plugins/**", "/api/0/issues/beta/plugins/sub/path/", "us"},
	{"/api/0/issues/*/related-issues", "/api/0/issues/beta/related-issues/", "us"},
	{"/api/0/issues/*/reprocessing", "/api/0/issues/beta/reprocessing/", "us"},
	{"/api/0/issues/*/similar-issues-embeddings", "/api/0/issues/beta/similar-issues-embeddings/", "us"},
	{"/api/0/issues/*/similar", "/api/0/issues/beta/similar/", "us"},
	{"/api/0/issues/*/stats", "/api/0/issues/beta/stats/", "us"},
	{"/api/0/issues/*/summarize", "/api/0/issues/beta/summarize/", "us"},
	{"/api/0/issues/*/tags/**", "/api/0/issues/beta/tags/sub/path/", "us"},
	{"/api/0/issues/*/user-feedback", "/api/0/issues/beta/user-feedback/", "us"},
	{"/api/0/issues/*/user-reports", "/api/0/issues/beta/user-reports/", "us"},
	{"/api/0/projects", "/api/0/projects/", "us"},
	{"/api/0/relays/**", "/api/0/relays/sub/path/", "us"},
	{"/api/0/seer/models", "/api/0/seer/models/", "us"},
	{"/api/0/users/*/organizations", "/api/0/users/beta/organizations/", "us"},
	{"/api/hooks/release/**", "/api/hooks/release/sub/path/", "us"},
	{"/issues/*/*/tags/*/export", "/issues/beta/beta/tags/beta/export/", "us"},
	{"/organization-avatar/**", "/organization-avatar/sub/path/", "us"},
	{"/{key}/*/issues/#/tags/*/export", "/beta/beta/issues/12/tags/beta/export/", "de"},
	{"/{key}/*/issues/#/actions/*", "/beta/beta/issues/12/actions/beta/", "de"},
	{"/{key}/*/events/*", "/beta/beta/events/beta/", "de"},
}

func assertNoUpstreamCall(t *testing.T, g *gateway) {
	t.Helper()
	for _, f := range []*fakeUpstream{g.us, g.de, g.flaky, g.slow, g.control} {
		if n := len(f.requests()); n != 0 {
			t.Fatalf("%s was called %d times", f.name, n)
		}
	}
}

// Case 18: in monolith mode nothing is proxied; every request reaches the
// next handler, with no gateway header either way.
func TestGatewayMonolith(t *testing.T) {
	g := startGateway(t, gatewayOptions{mode: "monolith"})
	for _, p := range []string{
		"/api/0/organizations/beta/issues/", "/api/0/relays/projectconfigs/", "/api/0/_admin/cells/de/x",
		"/api/embed/error-page/", "/api/0/organizations/nope/", "/acme/web/events/abc/",
	} {
		resp, body := g.get(t, p)
		if resp.StatusCode != 200 || string(body) != "hello from control" {
			t.Fatalf("%s: %d %q", p, resp.StatusCode, body)
		}
		if resp.Header.Get("X-Sentry-Proxy-URL") != "" {
			t.Fatalf("%s: X-Sentry-Proxy-URL in monolith mode", p)
		}
		if v := g.control.last(t).Header.Get("X-Apigateway"); v != "" {
			t.Fatalf("%s: X-Apigateway %q in monolith mode", p, v)
		}
	}
	for _, f := range []*fakeUpstream{g.us, g.de} {
		if n := len(f.requests()); n != 0 {
			t.Fatalf("%s called %d times in monolith mode", f.name, n)
		}
	}
}

// gateway_address, when set, receives the gateway's traffic (and names
// the region in Host and X-Sentry-Proxy-URL); the region's address is
// left alone.
func TestGatewayAddress(t *testing.T) {
	g := startGateway(t, gatewayOptions{deGateway: true})
	resp, body := g.get(t, "/api/0/organizations/beta/issues/")
	if resp.StatusCode != 200 || string(body) != "hello from de" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if seen := g.de.last(t); seen.Host != g.de.Host() {
		t.Fatalf("Host %q", seen.Host)
	}
	if got := resp.Header.Get("X-Sentry-Proxy-URL"); got != g.de.URL()+"/api/0/organizations/beta/issues/" {
		t.Fatalf("X-Sentry-Proxy-URL %q", got)
	}
}

// A reload keeps routing (the reverse_proxy handlers of the old config are
// cleaned up by its context) and applies the new settings.
func TestGatewayReload(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	if _, body := g.get(t, "/api/0/organizations/beta/"); string(body) != "hello from de" {
		t.Fatalf("before reload: %q", body)
	}
	// Trip flaky's breaker (default 16 failures): it stays open through
	// the reload below, which does not change the breaker's settings.
	g.flaky.respond(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	for i := range 17 {
		if resp, _ := g.get(t, "/api/0/organizations/flaky-org/"); resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("failure %d: %d", i+1, resp.StatusCode)
		}
	}
	cfg, err := os.ReadFile(filepath.Join(g.c.Dir, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(string(cfg), "sentry_region_route {\n", "sentry_region_route {\n\t\tcontrol_path /api/0/organizations/*/**\n", 1)
	g.c.Reload(t, next)
	if _, body := g.get(t, "/api/0/organizations/beta/"); string(body) != "hello from control" {
		t.Fatalf("after reload with control_path: %q", body)
	}
	if _, body := g.get(t, "/api/0/teams/beta/x/"); string(body) != "hello from de" {
		t.Fatalf("teams after reload: %q", body)
	}
	seen := len(g.flaky.requests())
	resp, body := g.get(t, "/api/0/teams/flaky-org/x/")
	wantAPIError(t, resp, body, 503, "Downstream service unavailable")
	if n := len(g.flaky.requests()); n != seen {
		t.Fatal("the breaker closed across the reload")
	}
	err = g.c.TryReload(strings.Replace(string(cfg), "sentry_region_route {\n", "sentry_region_route {\n\t\tbogus 1\n", 1))
	if err == nil || !strings.Contains(err.Error(), `unknown subdirective`) || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("reload with an unknown subdirective: %v", err)
	}
}
