package credproxy

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
)

// allowList holds the allow_host entries: hosts (names or IP literals)
// that any integration may name in Base-URL and that may be dialled even
// when they resolve to a loopback or link-local address. An entry without
// a port allows every port of the host.
type allowList struct {
	anyPort map[string]struct{}
	ports   map[string]struct{} // "host|port"
}

// parseAllowList reads the allow_host entries. An entry that repeats
// another is refused (it would add nothing); one whose host another entry
// already allows on every port is returned as a warning, since the port
// then restricts nothing.
func parseAllowList(entries []string) (a allowList, warnings []string, err error) {
	a = allowList{anyPort: map[string]struct{}{}, ports: map[string]struct{}{}}
	for _, e := range entries {
		host, port, err := splitAllowEntry(e)
		if err != nil {
			return allowList{}, nil, err
		}
		key := host + "|" + port
		if _, dup := a.ports[key]; dup {
			return allowList{}, nil, fmt.Errorf("allow_host %q is given twice", e)
		}
		if _, dup := a.anyPort[host]; dup && port == "" {
			return allowList{}, nil, fmt.Errorf("allow_host %q is given twice", e)
		}
		if port == "" {
			a.anyPort[host] = struct{}{}
		} else {
			a.ports[key] = struct{}{}
		}
	}
	for key := range a.ports {
		host, port, _ := strings.Cut(key, "|")
		if _, ok := a.anyPort[host]; ok {
			warnings = append(warnings, fmt.Sprintf("allow_host %s:%s restricts nothing: allow_host %s allows every port of that host", host, port, host))
		}
	}
	sort.Strings(warnings)
	return a, warnings, nil
}

func splitAllowEntry(e string) (host, port string, err error) {
	e = strings.TrimSpace(e)
	if e == "" || strings.Contains(e, "/") || strings.Contains(e, "@") {
		return "", "", fmt.Errorf("allow_host %q: want host or host:port", e)
	}
	if h, p, splitErr := net.SplitHostPort(e); splitErr == nil {
		n, convErr := strconv.Atoi(p)
		if convErr != nil || n < 1 || n > 65535 || h == "" {
			return "", "", fmt.Errorf("allow_host %q: bad port", e)
		}
		if err := checkHostName(h); err != nil {
			return "", "", fmt.Errorf("allow_host %q: %v", e, err)
		}
		return normalHost(h), strconv.Itoa(n), nil
	}
	h := strings.TrimSuffix(strings.TrimPrefix(e, "["), "]")
	if strings.Contains(h, ":") && net.ParseIP(h) == nil {
		return "", "", fmt.Errorf("allow_host %q: want host or host:port", e)
	}
	if err := checkHostName(h); err != nil {
		return "", "", fmt.Errorf("allow_host %q: %v", e, err)
	}
	return normalHost(h), "", nil
}

// checkHostName refuses what no Base-URL host can equal, so that an entry
// cannot silently allow nothing: hosts are compared whole, so a wildcard
// never matches.
func checkHostName(h string) error {
	if net.ParseIP(h) != nil {
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

// allows reports whether host (a name or an IP literal, unbracketed) and
// port are named by allow_host.
func (a allowList) allows(host, port string) bool {
	host = normalHost(host)
	if _, ok := a.anyPort[host]; ok {
		return true
	}
	_, ok := a.ports[host+"|"+port]
	return ok
}

func (a allowList) empty() bool { return len(a.anyPort) == 0 && len(a.ports) == 0 }

func normalHost(h string) string {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return h
}
