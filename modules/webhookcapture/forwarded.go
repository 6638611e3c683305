package webhookcapture

import (
	"net"
	"net/http"
	"strings"
)

// forwardedFor is the header name, canonical.
const forwardedFor = "X-Forwarded-For"

// addPeer sets X-Forwarded-For in the request's headers h to what a
// webhook is stored (and so replayed) with: the lines the sender sent,
// folded into one, with the address of the TCP peer appended. It is the
// rule of the gateway, whose reverse_proxy trusts every hop so that it
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
// It changes the request's own headers rather than a copy (a copy of the
// map was 0.8 KB and ~2.9k instructions per stored webhook): only a
// request being stored comes here, which goes to no next handler, and
// Caddy's access log shows the request as it was before any handler
// (server.go clones it for the log). What a placeholder read after this
// handler shows is the value stored.
func addPeer(h http.Header, remoteAddr string) {
	setPeer(h, h[forwardedFor], remoteAddr)
}

// setPeer sets X-Forwarded-For in h to the lines the sender sent (prior)
// folded, with the peer appended.
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
