package regionroute

import (
	"io"
	"net/http"
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
type gatewayWriter struct {
	caddyhttp.ResponseWriterWrapper
	proxyURL string
	status   int
}

var writerPool = sync.Pool{New: func() any { return new(gatewayWriter) }}

func getWriter(w http.ResponseWriter, proxyURL string) *gatewayWriter {
	g := writerPool.Get().(*gatewayWriter)
	g.ResponseWriter = w
	g.proxyURL = proxyURL
	g.status = 0
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
	g.ResponseWriter.WriteHeader(code)
}

func (g *gatewayWriter) Write(b []byte) (int, error) {
	if g.status == 0 {
		g.WriteHeader(http.StatusOK)
	}
	return g.ResponseWriter.Write(b)
}

func (g *gatewayWriter) ReadFrom(r io.Reader) (int64, error) {
	if g.status == 0 {
		g.WriteHeader(http.StatusOK)
	}
	return g.ResponseWriterWrapper.ReadFrom(r)
}

var _ http.ResponseWriter = (*gatewayWriter)(nil)
