package httpx

import (
	"net/http"
	"net/textproto"
	"strings"
)

// hopByHop are the headers that belong to one connection and are never
// passed on by a proxy: RFC 9110 §7.6.1, plus Proxy-Connection (still sent
// by old clients) and "Trailers", which Python's wsgiref (and so Sentry)
// also counts. Each caller adds what its own protocol drops besides.
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

// IsHopByHop reports whether a canonical header name is hop-by-hop.
func IsHopByHop(name string) bool {
	_, ok := hopByHop[name]
	return ok
}

// ConnectionTokens returns the canonical names that h's Connection header
// declares hop-by-hop too, nil when there are none.
func ConnectionTokens(h http.Header) map[string]struct{} {
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

// RemoveHopByHop deletes from h the hop-by-hop headers and those its
// Connection header names.
func RemoveHopByHop(h http.Header) {
	for name := range ConnectionTokens(h) {
		h.Del(name)
	}
	for name := range hopByHop {
		delete(h, name)
	}
}
