package credproxy

import (
	"context"
	"net"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
)

// dialPolicy is what a third-party host may resolve to unless allow_host
// names it: anything but this host, its link, cloud metadata and
// multicast. Private addresses are allowed: GitHub Enterprise, self-hosted
// GitLab and Azure DevOps Server commonly live on private networks, and
// the host must already belong to the integration (target.go).
const dialPolicy = httpx.NotLocal

// dialError marks a failure to connect, which the proxy answers with 503
// (Sentry's ApiHostError), as opposed to a timeout once connected (504).
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

type connectTimeoutKey struct{}

// withConnectTimeout sets the dial timeout of one outbound call.
func withConnectTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, connectTimeoutKey{}, d)
}

// guardedDialer dials third parties. Unless allow_host names the host,
// dialPolicy is enforced at dial time (httpx.Dialer: in the socket's
// Control hook, after resolution and before connect), so a DNS answer
// that changes between the host check and the dial (rebinding) still
// cannot reach loopback, link-local or metadata addresses.
type guardedDialer struct {
	allow  allowList
	dialer net.Dialer
}

func (g *guardedDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d := httpx.Dialer{Dialer: g.dialer, PolicyFor: g.policyFor}
	if t, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && t > 0 {
		d.Dialer.Timeout = t
	}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &dialError{err}
	}
	return c, nil
}

// policyFor lets the hosts allow_host names reach any address.
func (g *guardedDialer) policyFor(host, port string) httpx.Policy {
	if g.allow.allows(host, port) {
		return 0
	}
	return dialPolicy
}
