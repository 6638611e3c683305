package drain

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
)

// callbackPolicy decides where the drainer may POST a region's answer.
//
// A response_url must be https, without credentials, and name one of:
//   - a default callback host of its provider (webhooks.CallbackHosts:
//     Slack's hooks.slack.com and hooks.slack-gov.com, Discord's
//     discord.com and discordapp.com) on port 443;
//   - a callback_hosts entry without a port ("hooks.example.com"): that
//     host on any port;
//   - a callback_hosts entry with its port ("chat.corp:8443"): that host
//     on that port only.
//
// Whatever the host, the address it resolves to must be a public one
// (httpx.PublicOnly), checked at dial time. Only an entry named with its
// port may also reach private networks and loopback: naming the exact
// port is a deliberate statement about one service (a Slack-compatible
// chat server on a private network; a test peer on loopback), as in the
// credential proxy's allow_host. No entry ever reaches link-local, cloud
// metadata, multicast or unspecified addresses.
type callbackPolicy struct {
	anyPort map[string]bool // bare callback_hosts entries
	ports   map[string]bool // "host|port" entries
	lookup  func(ctx context.Context, host string) ([]netip.Addr, error)
}

// namedPolicy is the dial policy of a host named with its port.
const namedPolicy = httpx.PublicOnly &^ (httpx.Loopback | httpx.Private)

// CheckCallbackHost validates one callback_hosts entry, for config
// errors.
func CheckCallbackHost(entry string) error {
	if _, _, err := httpx.ParseHostEntry(entry); err != nil {
		return fmt.Errorf("callback_hosts %q: %v", entry, err)
	}
	return nil
}

func newCallbackPolicy(entries []string) (*callbackPolicy, error) {
	c := &callbackPolicy{anyPort: map[string]bool{}, ports: map[string]bool{}}
	for _, e := range entries {
		host, port, err := httpx.ParseHostEntry(e)
		if err != nil {
			return nil, fmt.Errorf("callback_hosts %q: %v", e, err)
		}
		if port == "" {
			c.anyPort[host] = true
		} else {
			c.ports[host+"|"+port] = true
		}
	}
	c.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}
	return c, nil
}

// dialPolicy is the address policy of a dial to host:port (normalised).
func (c *callbackPolicy) dialPolicy(host, port string) httpx.Policy {
	if c.ports[host+"|"+port] {
		return namedPolicy
	}
	return httpx.PublicOnly
}

// errCallbackRefused marks the errors of check. Their text never holds
// the URL: a response_url is a bearer token for the conversation.
var errCallbackRefused = errors.New("response_url refused")

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errCallbackRefused, fmt.Sprintf(format, args...))
}

// callbackLookupTimeout bounds check's DNS lookup.
const callbackLookupTimeout = 2 * time.Second

// check returns nil when the drainer may POST provider's callback to raw.
// Beyond the static rules, a host name is resolved and refused when every
// address it has is refused: "callback_hosts localhost" is caught before
// the region is called, not at the dial after it. A failed lookup lets the
// URL through (DNS may be back by the POST); the dial checks again.
func (c *callbackPolicy) check(ctx context.Context, provider, raw string) error {
	defaults := webhooks.CallbackHosts(provider)
	if defaults == nil {
		return refused("provider %q has no response_url callbacks", provider)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Hostname() == "" {
		return refused("not an absolute URL")
	}
	if u.Scheme != "https" {
		return refused("the scheme must be https, not %q", u.Scheme)
	}
	if u.User != nil {
		return refused("it carries credentials")
	}
	host, port := httpx.NormalHost(u.Hostname()), u.Port()
	if port == "" {
		port = "443"
	}
	switch {
	case c.ports[host+"|"+port], c.anyPort[host]:
	case port == "443" && slices.Contains(defaults, host):
	default:
		return refused("%s port %s is not a callback host of %s (callback_hosts adds hosts)", host, port, provider)
	}
	policy := c.dialPolicy(host, port)
	if ip, err := netip.ParseAddr(host); err == nil {
		if err := policy.Check(ip); err != nil {
			return refused("%v", err)
		}
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, callbackLookupTimeout)
	defer cancel()
	addrs, err := c.lookup(lctx, host)
	if err != nil || len(addrs) == 0 {
		return nil
	}
	var first error
	for _, a := range addrs {
		err := policy.Check(a)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return refused("%s resolves only to refused addresses: %v", host, first)
}

// newCallbackTransport carries the POSTs to response_url: its own, so
// that the address guard applies to every callback and to nothing else.
// No proxy from the environment: a proxy would dial on our behalf and
// the guard would check the proxy, not the destination.
func newCallbackTransport(cfg Config, policy *callbackPolicy) *http.Transport {
	return httpx.NewTransport(httpx.TransportOptions{
		DialContext: (&httpx.Dialer{
			Dialer:    net.Dialer{Timeout: 5 * time.Second, KeepAlive: httpx.KeepAlive},
			PolicyFor: policy.dialPolicy,
		}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: cfg.CallbackRootCAs, MinVersion: tls.VersionTLS12},
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   16,
		ResponseHeaderTimeout: cfg.RequestTimeout,
	})
}
