package credproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// errForbiddenAddress is returned when a third-party host resolves to an
// address the proxy must never reach on a region's behalf.
var errForbiddenAddress = errors.New("address refused: loopback, link-local or cloud metadata")

var (
	awsMetadataV4 = netip.MustParseAddr("169.254.169.254")
	awsMetadataV6 = netip.MustParseAddr("fd00:ec2::254")
)

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
// the addresses it resolves to are checked in the socket's Control hook,
// after resolution and before connect, so a DNS answer that changes
// between the host check and the dial (rebinding) still cannot reach
// loopback, link-local or metadata addresses.
type guardedDialer struct {
	allow  allowList
	dialer net.Dialer
}

func (g *guardedDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d := g.dialer
	if t, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && t > 0 {
		d.Timeout = t
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &dialError{err}
	}
	if !g.allow.allows(host, port) {
		d.Control = refuseSpecialAddresses
	}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &dialError{err}
	}
	return c, nil
}

func refuseSpecialAddresses(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return errForbiddenAddress
	}
	if forbiddenAddr(ap.Addr()) {
		return errForbiddenAddress
	}
	return nil
}

func forbiddenAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsUnspecified() || ip.IsMulticast() ||
		ip == awsMetadataV4 || ip == awsMetadataV6 ||
		// 0.0.0.0/8 reaches the local host on Linux.
		(ip.Is4() && ip.As4()[0] == 0)
}
