package credproxy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
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
	host, port, err = httpx.ParseHostEntry(e)
	if err != nil {
		return "", "", fmt.Errorf("allow_host %q: %v", e, err)
	}
	return host, port, nil
}

// allows reports whether host (a name or an IP literal, unbracketed) and
// port are named by allow_host.
func (a allowList) allows(host, port string) bool {
	host = httpx.NormalHost(host)
	if _, ok := a.anyPort[host]; ok {
		return true
	}
	_, ok := a.ports[host+"|"+port]
	return ok
}
