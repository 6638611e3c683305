package httpx

import (
	"errors"
	"fmt"
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
		if err := checkHostName(h); err != nil {
			return "", "", err
		}
		return NormalHost(h), strconv.Itoa(n), nil
	}
	h := strings.TrimSuffix(strings.TrimPrefix(e, "["), "]")
	if strings.Contains(h, ":") {
		if _, err := netip.ParseAddr(h); err != nil {
			return "", "", errors.New("want host or host:port")
		}
	}
	if err := checkHostName(h); err != nil {
		return "", "", err
	}
	return NormalHost(h), "", nil
}

// checkHostName refuses what no URL host can equal, so that an entry
// cannot silently allow nothing: hosts are compared whole, so a wildcard
// never matches.
func checkHostName(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if strings.Contains(h, "*") {
		return errors.New("wildcards are not supported; list each host")
	}
	name := strings.TrimSuffix(h, ".")
	if name == "" || len(name) > 253 {
		return errors.New("not a host name")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("not a host name")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("not a host name (character %q)", c)
			}
		}
	}
	return nil
}
