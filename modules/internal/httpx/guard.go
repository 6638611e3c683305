// Package httpx is the outbound address guard shared by the credential
// proxy and the drainer's response_url callbacks: which addresses a dial
// made on someone else's behalf may reach. The check runs in the socket's
// Control hook, after DNS resolution and before connect, on the address
// actually dialled, so a name that resolves to one address when a URL is
// checked and to another when it is dialled (DNS rebinding) cannot get
// through. Nothing here imports Caddy.
package httpx

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// Policy is a set of address classes that a dial refuses. The zero Policy
// refuses nothing.
type Policy uint16

// Address classes. One address can be in several (169.254.169.254 is
// link-local and cloud metadata; fd00:ec2::254 is private and metadata),
// and is refused when the policy refuses any of them.
const (
	// Loopback is 127.0.0.0/8 and ::1: this host.
	Loopback Policy = 1 << iota
	// Unspecified is 0.0.0.0/8 and ::. Linux connects 0.0.0.0 to this
	// host, so it is loopback by another name.
	Unspecified
	// LinkLocal is 169.254.0.0/16 and fe80::/10.
	LinkLocal
	// Metadata is the cloud instance metadata services, which hand out
	// the instance's credentials: 169.254.169.254 (AWS, GCP, Azure,
	// OpenStack, DigitalOcean, Oracle), fd00:ec2::254 (AWS over IPv6)
	// and 100.100.100.200 (Alibaba Cloud).
	Metadata
	// Multicast is 224.0.0.0/4 and ff00::/8.
	Multicast
	// Private is the private networks: 10.0.0.0/8, 172.16.0.0/12,
	// 192.168.0.0/16, 100.64.0.0/10 (carrier-grade NAT, used inside cloud
	// networks too), fc00::/7 and the deprecated site-local fec0::/10.
	Private
	// NonGlobal is the other special-purpose ranges that no Internet
	// service lives on: IETF assignments, documentation, benchmarking,
	// reserved space and broadcast, the IPv4-compatible ::/96, local-use
	// NAT64 and discard-only prefixes.
	NonGlobal
)

// The policies in use.
const (
	// NotLocal refuses this host, its link, cloud metadata and multicast,
	// and lets private networks through. It is the credential proxy's:
	// GitHub Enterprise and self-hosted GitLab commonly live on private
	// networks.
	NotLocal = Loopback | Unspecified | LinkLocal | Metadata | Multicast
	// PublicOnly lets only globally routable unicast addresses through.
	// It is the drainer's for response_url callbacks, whose URL comes in
	// the body of a request that may not even be signed.
	PublicOnly = NotLocal | Private | NonGlobal
)

// classNames describe a refused class in errors, most specific first.
var classNames = []struct {
	class Policy
	name  string
}{
	{Metadata, "a cloud metadata address"},
	{Loopback, "a loopback address"},
	{Unspecified, "an unspecified address"},
	{LinkLocal, "a link-local address"},
	{Multicast, "a multicast address"},
	{Private, "a private address"},
	{NonGlobal, "not a globally routable address"},
}

// ErrRefused matches every *RefusedError (errors.Is).
var ErrRefused = errors.New("address refused")

// RefusedError is a dial the policy refused. It names the address, never
// the URL (whose path can carry a token).
type RefusedError struct {
	Addr  netip.Addr
	Class Policy // the refused classes the address is in
}

func (e *RefusedError) Error() string {
	for _, c := range classNames {
		if e.Class&c.class != 0 {
			return "address refused: " + e.Addr.String() + " is " + c.name
		}
	}
	return "address refused: " + e.Addr.String()
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

type prefixClass struct {
	prefix netip.Prefix
	class  Policy
}

// ranges classifies addresses; an address gets the union of the classes
// of every prefix that holds it.
var ranges = func() []prefixClass {
	table := []struct {
		cidr  string
		class Policy
	}{
		{"0.0.0.0/8", Unspecified},
		{"10.0.0.0/8", Private},
		{"100.64.0.0/10", Private},
		{"100.100.100.200/32", Metadata},
		{"127.0.0.0/8", Loopback},
		{"169.254.0.0/16", LinkLocal},
		{"169.254.169.254/32", Metadata},
		{"172.16.0.0/12", Private},
		{"192.0.0.0/24", NonGlobal},
		{"192.0.2.0/24", NonGlobal},
		{"192.88.99.0/24", NonGlobal},
		{"192.168.0.0/16", Private},
		{"198.18.0.0/15", NonGlobal},
		{"198.51.100.0/24", NonGlobal},
		{"203.0.113.0/24", NonGlobal},
		{"224.0.0.0/4", Multicast},
		{"240.0.0.0/4", NonGlobal},
		{"::/128", Unspecified},
		{"::1/128", Loopback},
		{"64:ff9b:1::/48", NonGlobal},
		{"100::/64", NonGlobal},
		{"2001:2::/48", NonGlobal},
		{"2001:db8::/32", NonGlobal},
		{"fc00::/7", Private},
		{"fd00:ec2::254/128", Metadata},
		{"fe80::/10", LinkLocal},
		{"fec0::/10", Private},
		{"ff00::/8", Multicast},
	}
	out := make([]prefixClass, len(table))
	for i, r := range table {
		out[i] = prefixClass{netip.MustParsePrefix(r.cidr), r.class}
	}
	return out
}()

var (
	v4Compatible = netip.MustParsePrefix("::/96")
	nat64        = netip.MustParsePrefix("64:ff9b::/96")
	sixToV4      = netip.MustParsePrefix("2002::/16")
)

// Classify returns the classes ip is in; 0 for a global unicast address.
// IPv4-mapped addresses are their IPv4 address, and an IPv4 address
// embedded in a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address counts
// too: a gateway would connect to it.
func Classify(ip netip.Addr) Policy {
	ip = ip.Unmap().WithZone("")
	var c Policy
	for _, r := range ranges {
		if r.prefix.Contains(ip) {
			c |= r.class
		}
	}
	if ip.Is6() {
		b := ip.As16()
		switch {
		case c == 0 && v4Compatible.Contains(ip):
			c = NonGlobal // deprecated IPv4-compatible addresses (not :: or ::1)
		case nat64.Contains(ip):
			c |= Classify(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		case sixToV4.Contains(ip):
			c |= Classify(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
		}
	}
	return c
}

// Check returns a *RefusedError when p refuses ip, else nil.
func (p Policy) Check(ip netip.Addr) error {
	if c := Classify(ip) & p; c != 0 {
		return &RefusedError{Addr: ip.Unmap().WithZone(""), Class: c}
	}
	return nil
}

// Control is a net.Dialer Control hook enforcing p on the address about
// to be connected.
func (p Policy) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Never happens for TCP over IP; refuse what cannot be checked.
		return &RefusedError{Class: p}
	}
	return p.Check(ap.Addr())
}

// Dialer dials with the policy PolicyFor gives the host and port being
// dialled (as the URL named them, before resolution), checked by Control
// on every address the name resolves to.
type Dialer struct {
	// Dialer is copied for each dial; its Control hook is replaced.
	Dialer net.Dialer
	// PolicyFor returns the policy of one destination; nil means
	// PublicOnly for every destination.
	PolicyFor func(host, port string) Policy
}

// DialContext implements the DialContext of http.Transport.
func (g *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d := g.Dialer
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p := PublicOnly
	if g.PolicyFor != nil {
		p = g.PolicyFor(NormalHost(host), port)
	}
	d.Control = nil
	if p != 0 {
		d.Control = p.Control
	}
	return d.DialContext(ctx, network, addr)
}

// NormalHost lower-cases a host name and drops a trailing dot and IPv6
// brackets; an IP literal comes back in its canonical form (an
// IPv4-mapped address as its IPv4 address). Allow-lists
// compare hosts in this form.
func NormalHost(h string) string {
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Unmap().String()
	}
	return h
}
