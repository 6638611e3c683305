package regionroute

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// gatewayWriter sits between reverse_proxy and the client. When the
// region's response head goes out it removes the X-Sentry-Subnet-*
// headers (and any X-Sentry-Proxy-URL the region sent), adds ours, and
// remembers the status for the breaker. Doing this here, not with
// reverse_proxy header ops, costs no placeholder expansion and no
// lower-casing of every header name per response. It embeds
// ResponseWriterWrapper, whose Unwrap keeps http.ResponseController
// (flush on every write, hijack for upgrades) working.
//
// It also streams answers of known length: a write that leaves part of
// the announced body still to come is flushed at once, so bytes a region
// trickles (a long poll, a slow export) reach the client as they arrive,
// while a fast answer, whose body comes in the write that completes it,
// goes out in one write with its head when the handler returns. This
// replaced reverse_proxy's flush_interval, whose per-response timer and
// latency writer cost ~3k instructions per request even when nothing
// waited (see proxyConfig). Answers of unknown length and event streams
// reverse_proxy flushes after every write itself.
type gatewayWriter struct {
	caddyhttp.ResponseWriterWrapper
	proxyURL string
	status   int
	// unsent is how much of the announced body is still to be written;
	// 0 when the head announced no length (or all of it is written).
	unsent int64
}

var writerPool = sync.Pool{New: func() any { return new(gatewayWriter) }}

func getWriter(w http.ResponseWriter, proxyURL string) *gatewayWriter {
	g := writerPool.Get().(*gatewayWriter)
	g.ResponseWriter = w
	g.proxyURL = proxyURL
	g.status = 0
	g.unsent = 0
	return g
}

func putWriter(g *gatewayWriter) {
	g.ResponseWriter = nil
	g.proxyURL = ""
	writerPool.Put(g)
}

const (
	headerProxyURL     = "X-Sentry-Proxy-Url" // canonical form of X-Sentry-Proxy-URL
	subnetHeaderPrefix = "X-Sentry-Subnet-"
)

func (g *gatewayWriter) WriteHeader(code int) {
	// 1xx (but 101) are informational; the final head comes later.
	if g.status != 0 || (code >= 100 && code < 200 && code != http.StatusSwitchingProtocols) {
		g.ResponseWriter.WriteHeader(code)
		return
	}
	g.status = code
	hdr := g.ResponseWriter.Header()
	for k := range hdr {
		if len(k) >= len(subnetHeaderPrefix) && strings.EqualFold(k[:len(subnetHeaderPrefix)], subnetHeaderPrefix) {
			delete(hdr, k)
		}
	}
	hdr[headerProxyURL] = []string{g.proxyURL}
	if cl := hdr["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n > 0 {
			g.unsent = n
		}
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *gatewayWriter) Write(b []byte) (int, error) {
	if g.status == 0 {
		g.WriteHeader(http.StatusOK)
	}
	n, err := g.ResponseWriter.Write(b)
	if g.unsent > 0 {
		g.unsent -= int64(n)
		if g.unsent > 0 && err == nil {
			// More of the body is to come, maybe not soon: send what
			// the client can already have. A flush error shows on the
			// next write, as reverse_proxy's own flushes do.
			_ = http.NewResponseController(g.ResponseWriter).Flush()
		}
	}
	return n, err
}

func (g *gatewayWriter) ReadFrom(r io.Reader) (int64, error) {
	if g.status == 0 {
		g.WriteHeader(http.StatusOK)
	}
	return g.ResponseWriterWrapper.ReadFrom(r)
}

var _ http.ResponseWriter = (*gatewayWriter)(nil)
