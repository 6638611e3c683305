package credproxy

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

// requestDrops are Sentry's INVALID_PROXY_HEADERS: the outbound client
// sets its own Host and length, and the body is sent as received.
var requestDrops = map[string]struct{}{
	"Host":              {},
	"Content-Length":    {},
	"Content-Encoding":  {},
	"X-Forwarded-Proto": {},
}

var failureHeader = textproto.CanonicalMIMEHeaderKey(subnet.HeaderInternalProxyFailure)

// outboundHeaders copies the caller's headers for the third party, minus
// the subnet headers, the proxy failure header, requestDrops and
// hop-by-hop headers (including those named in Connection).
func outboundHeaders(in http.Header) http.Header {
	named := httpx.ConnectionTokens(in)
	out := make(http.Header, len(in))
	for k, vv := range in {
		if _, drop := requestDrops[k]; drop {
			continue
		}
		if dropCommon(k, named) {
			continue
		}
		out[k] = vv
	}
	return out
}

// copyResponseHeaders copies the third party's headers to the client,
// minus hop-by-hop headers, the subnet headers and any
// X-Sentry-Internal-Proxy-Failure the third party sent.
func copyResponseHeaders(dst, src http.Header) {
	named := httpx.ConnectionTokens(src)
	for k, vv := range src {
		if dropCommon(k, named) {
			continue
		}
		dst[k] = vv
	}
}

func dropCommon(k string, named map[string]struct{}) bool {
	if httpx.IsHopByHop(k) {
		return true
	}
	if k == failureHeader || strings.HasPrefix(k, subnet.HeaderPrefix) {
		return true
	}
	if named != nil {
		if _, ok := named[k]; ok {
			return true
		}
	}
	return false
}
