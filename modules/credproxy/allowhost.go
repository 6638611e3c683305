package credproxy

import (
	"fmt"

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

func parseAllowList(entries []string) (allowList, error) {
	a := allowList{anyPort: map[string]struct{}{}, ports: map[string]struct{}{}}
	for _, e := range entries {
		host, port, err := splitAllowEntry(e)
		if err != nil {
			return allowList{}, err
		}
		if port == "" {
			a.anyPort[host] = struct{}{}
		} else {
			a.ports[host+"|"+port] = struct{}{}
		}
	}
	return a, nil
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

func (a allowList) empty() bool { return len(a.anyPort) == 0 && len(a.ports) == 0 }
