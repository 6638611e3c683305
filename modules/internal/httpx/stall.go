package httpx

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DialFunc is the dial of an http.Transport.
type DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// WithStallBound wraps a dial so that, on the TCP connections it makes,
// no call waits longer than bound: a write the peer takes nothing of, a
// read no byte comes for, and the wait for an answer once a request is
// written (each write moves the read deadline too). Other connections are
// returned as they are. It is the region's bound on a stalled upload, a
// stalled answer body, and the answer's head over HTTP/1.1, where a
// connection carries one request at a time.
//
// What it replaces costs a runtime timer per request and per call: the
// transport's ResponseHeaderTimeout starts and stops a timer for every
// request (~2.5k instructions per proxied request, callgrind), and a
// deadline set before every read and write (reverse_proxy's read_timeout
// and write_timeout) updates the connection's timer each time (~1k).
// Here a deadline is moved only when the one in place would come sooner
// than the bound, and then past it by a slack of an eighth of the bound,
// at most a second: a call is never cut before its bound and at most the
// slack after it, and a busy connection moves its deadlines about once
// per slack.
//
// An idle connection's pending read (Go's transport keeps one) is cut
// after bound too, which closes the connection when bound is shorter
// than the transport's idle timeout; a request is written (and the read
// deadline moved) before its answer is read, so a connection taken from
// the pool is never cut under a request for time it spent idle.
func WithStallBound(dial DialFunc, bound time.Duration) DialFunc {
	if bound <= 0 {
		return dial
	}
	slack := min(bound/8, time.Second)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tcp, ok := c.(*net.TCPConn)
		if !ok {
			return c, nil
		}
		// The embedded *net.TCPConn keeps its ReadFrom (splice, sendfile),
		// as reverse_proxy's own timeout wrapper does.
		return &stallBoundConn{TCPConn: tcp, base: time.Now(), bound: bound, slack: slack}, nil
	}
}

type stallBoundConn struct {
	*net.TCPConn
	// base is the monotonic origin of the deadlines: time.Since reads one
	// clock where time.Now reads two.
	base         time.Time
	bound, slack time.Duration
	read, write  deadline
}

// deadline is one direction's deadline in place, in nanoseconds since
// base (0: none). Reads and writes run on different goroutines, and both
// move the read deadline; mu orders the moves so that it never goes back.
type deadline struct {
	at atomic.Int64
	mu sync.Mutex
}

// extend makes d at least a bound past now: when the deadline in place
// comes sooner, it moves it to a slack past that, on the socket too.
func (c *stallBoundConn) extend(d *deadline, now time.Duration, read bool) {
	if time.Duration(d.at.Load())-now >= c.bound {
		return // the fast path: no lock, no timer
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Duration(d.at.Load())-now >= c.bound {
		return // moved by the other direction meanwhile
	}
	at := now + c.bound + c.slack
	d.at.Store(int64(at))
	// An error here (a closed connection) is the call's to report.
	if read {
		_ = c.TCPConn.SetReadDeadline(c.base.Add(at))
	} else {
		_ = c.TCPConn.SetWriteDeadline(c.base.Add(at))
	}
}

func (c *stallBoundConn) Read(p []byte) (int, error) {
	c.extend(&c.read, time.Since(c.base), true)
	return c.TCPConn.Read(p)
}

func (c *stallBoundConn) Write(p []byte) (int, error) {
	now := time.Since(c.base)
	c.extend(&c.write, now, false)
	// What is written may be a request whose answer the pending read
	// waits for: that wait is bounded from now.
	c.extend(&c.read, now, true)
	return c.TCPConn.Write(p)
}

// A deadline set from outside replaces the one in place; the next call
// arms the bound's again, as a deadline set before every call would.

func (c *stallBoundConn) SetDeadline(t time.Time) error {
	c.read.mu.Lock()
	c.write.mu.Lock()
	defer c.read.mu.Unlock()
	defer c.write.mu.Unlock()
	c.read.at.Store(0)
	c.write.at.Store(0)
	return c.TCPConn.SetDeadline(t)
}

func (c *stallBoundConn) SetReadDeadline(t time.Time) error {
	c.read.mu.Lock()
	defer c.read.mu.Unlock()
	c.read.at.Store(0)
	return c.TCPConn.SetReadDeadline(t)
}

func (c *stallBoundConn) SetWriteDeadline(t time.Time) error {
	c.write.mu.Lock()
	defer c.write.mu.Unlock()
	c.write.at.Store(0)
	return c.TCPConn.SetWriteDeadline(t)
}
