package webhookcapture

import (
	"maps"
	"net"
	"net/http"
	"strings"
)

// forwardedFor is the header name, canonical.
const forwardedFor = "X-Forwarded-For"

// withPeer returns the headers a webhook is stored (and so replayed) and
// proxied with: h, with the address of the TCP peer appended to the
// X-Forwarded-For the sender sent, every line of it folded into one. It is
// the rule of the gateway, whose reverse_proxy trusts every hop so that it
// appends rather than replaces: the last entry is always whoever connected
// to Caddy, and nothing a sender writes can take its place. The peer is
// r.RemoteAddr, not Caddy's client_ip: with trusted_proxies, client_ip is
// what a proxy in front claims, which is already in the header if that
// proxy appends.
//
// Like reverse_proxy, a Unix-socket peer ("@") adds nothing, and a peer
// address that does not parse drops the header (a region must not trust a
// header nothing vouches for).
//
// h is not modified: the request's own headers still serve the next
// handler and the access log. The copy shares the value slices.
func withPeer(h http.Header, remoteAddr string) http.Header {
	// maps.Clone copies the map's table as it is rather than inserting
	// every name again: 5.8k -> 2.9k instructions in BenchmarkWithPeer.
	out := maps.Clone(h)
	if out == nil {
		out = make(http.Header, 1)
	}
	setPeer(out, h[forwardedFor], remoteAddr)
	return out
}

// setPeer sets X-Forwarded-For in h, a copy of the request's headers, to
// the lines the sender sent (prior) folded, with the peer appended.
func setPeer(h http.Header, prior []string, remoteAddr string) {
	if value, ok := appendPeer(prior, remoteAddr); ok {
		h[forwardedFor] = []string{value}
	} else {
		delete(h, forwardedFor)
	}
}

// appendPeer folds the lines a sender sent and appends the peer's address
// to them; ok is false when the header is to be left out.
func appendPeer(prior []string, remoteAddr string) (value string, ok bool) {
	sent := strings.Join(prior, ", ")
	if remoteAddr == "@" {
		return sent, sent != ""
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return "", false
	}
	host, _, _ = strings.Cut(host, "%") // an IPv6 zone
	if sent == "" {
		return host, true
	}
	return sent + ", " + host, true
}
