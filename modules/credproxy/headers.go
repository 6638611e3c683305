package credproxy

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

// hopByHop are the hop-by-hop headers of RFC 9110 §7.6.1 plus the ones
// wsgiref and Go's reverse proxy also treat so.
var hopByHop = map[string]struct{}{
	"Connection":          {},
	"Proxy-Connection":    {},
	"Keep-Alive":          {},
	"Proxy-Authenticate":  {},
	"Proxy-Authorization": {},
	"Te":                  {},
	"Trailer":             {},
	"Trailers":            {},
	"Transfer-Encoding":   {},
	"Upgrade":             {},
}

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
	named := connectionNamed(in)
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
	named := connectionNamed(src)
	for k, vv := range src {
		if dropCommon(k, named) {
			continue
		}
		dst[k] = vv
	}
}

func dropCommon(k string, named map[string]struct{}) bool {
	if _, hop := hopByHop[k]; hop {
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

// connectionNamed returns the headers a Connection header declares
// hop-by-hop, nil when there are none.
func connectionNamed(h http.Header) map[string]struct{} {
	vv := h["Connection"]
	if len(vv) == 0 {
		return nil
	}
	named := map[string]struct{}{}
	for _, v := range vv {
		for _, f := range strings.Split(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				named[textproto.CanonicalMIMEHeaderKey(f)] = struct{}{}
			}
		}
	}
	return named
}
