package httpx

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ParseHostEntry reads one allow-list entry, "host" or "host:port" (an
// IPv6 literal in brackets when it has a port), as the credential proxy's
// allow_host and the drainer's callback_hosts take them. The host comes
// back as NormalHost gives it, the port as digits ("" when none).
func ParseHostEntry(e string) (host, port string, err error) {
	e = strings.TrimSpace(e)
	if e == "" || strings.ContainsAny(e, "/@?#") {
		return "", "", errors.New("want host or host:port")
	}
	if h, p, splitErr := net.SplitHostPort(e); splitErr == nil {
		n, convErr := strconv.Atoi(p)
		if convErr != nil || n < 1 || n > 65535 || h == "" {
			return "", "", errors.New("bad port")
		}
		return NormalHost(h), strconv.Itoa(n), nil
	}
	h := strings.TrimSuffix(strings.TrimPrefix(e, "["), "]")
	if strings.Contains(h, ":") {
		if _, err := netip.ParseAddr(h); err != nil {
			return "", "", errors.New("want host or host:port")
		}
	}
	return NormalHost(h), "", nil
}
