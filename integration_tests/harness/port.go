package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Why ports work this way. The old helper listened on 127.0.0.1:0, closed
// the listener and returned the number, "free a moment ago"; the child
// bound it later. go test ./... runs packages in parallel, and the kernel
// hands a closed port to the next listen(:0) or outgoing connection that
// asks: measured on this machine, a port closed that way came back 8 times
// in 30 000 listen(:0) calls, so two instances could meet on one port.
//
// A Port is instead held, for as long as its owner lives, by a socket bound
// to 127.0.0.1:0 that never listens, with SO_REUSEPORT:
//   - the kernel never hands a bound port to listen(:0) or to an outgoing
//     connection (0 times in the same 30 000 calls, and in 5 000 dials);
//   - a plain bind of it fails with "address already in use": only a
//     SO_REUSEPORT socket of the same user can bind next to it, and Caddy
//     sets SO_REUSEPORT on every TCP listener it opens on Linux (caddy's
//     listen_unix.go, listenReusable), so the binary binds its ports itself,
//     as it does in production, reloads included;
//   - a socket that does not listen takes no connection: once the process
//     dies its ports refuse connections, as a crashed server's do, and
//     Relaunch binds them again with no one able to take them meanwhile.
//
// Handing Caddy an inherited listener (its "fd/N" network) was the other
// way; it was not taken because every config generation would then share
// one socket, so reloads would not run the listener path operators run
// (each generation's own SO_REUSEPORT socket), and every site block would
// need a bind line that the Caddyfiles under test do not have.

// Port is a TCP port on 127.0.0.1 reserved until Close.
type Port struct {
	Num  int
	Addr string // 127.0.0.1:Num

	hold *os.File // bound, never listening
}

// NewPort reserves a port. The caller must Close it.
func NewPort() (*Port, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reserve a port: socket: %w", err)
	}
	hold := os.NewFile(uintptr(fd), "port reservation")
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		hold.Close()
		return nil, fmt.Errorf("reserve a port: SO_REUSEPORT: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		hold.Close()
		return nil, fmt.Errorf("reserve a port: bind 127.0.0.1:0: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		hold.Close()
		return nil, fmt.Errorf("reserve a port: getsockname: %w", err)
	}
	num := sa.(*unix.SockaddrInet4).Port
	return &Port{Num: num, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(num)), hold: hold}, nil
}

// ReservePort is NewPort for tests: the port is released when the test
// ends, after the instances started in the test have stopped (their
// cleanups were registered later, and cleanups run last in, first out).
func ReservePort(t testing.TB) *Port {
	t.Helper()
	p, err := NewPort()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Close releases the reservation. Listeners open on the port stay open.
func (p *Port) Close() error { return p.hold.Close() }

// URL is http://127.0.0.1:Num.
func (p *Port) URL() string { return "http://" + p.Addr }

// Listen opens a listener on the port, next to the reservation, for a
// server of the test's own. Close it and the port refuses connections
// again; Listen again to come back at the same address.
func (p *Port) Listen() (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), "tcp", p.Addr)
}
