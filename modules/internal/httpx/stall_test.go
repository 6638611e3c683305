package httpx

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// loopback dials through dial to a listener of its own and returns both
// ends of the connection.
func loopback(t *testing.T, dial DialFunc) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c, peer
}

// TestStallBoundExtend: a deadline moves only when the one in place would
// come sooner than the bound, then to a slack past it, and never back.
func TestStallBoundExtend(t *testing.T) {
	const s = time.Second
	var d net.Dialer
	c, _ := loopback(t, WithStallBound(d.DialContext, 8*s))
	sc, ok := c.(*stallBoundConn)
	if !ok {
		t.Fatalf("dial returned %T", c)
	}
	if sc.slack != s {
		t.Fatalf("slack of 8s is %v, want a second", sc.slack)
	}
	steps := []struct {
		now  time.Duration
		want time.Duration // the read deadline after the step
	}{
		{now: 0, want: 9 * s},                      // none in place
		{now: 500 * time.Millisecond, want: 9 * s}, // 8.5s ahead: left
		{now: s, want: 9 * s},                      // exactly the bound ahead: left
		{now: s + 1, want: s + 1 + 9*s},            // less than the bound ahead
		{now: 2 * s, want: s + 1 + 9*s},            //
		{now: 30 * s, want: 39 * s},                // after a long idle
		{now: 20 * s, want: 39 * s},                // an earlier clock never moves it back
		{now: 30*s + 999*time.Millisecond, want: 39 * s},
	}
	for _, st := range steps {
		sc.extend(&sc.read, st.now, true)
		if got := time.Duration(sc.read.at.Load()); got != st.want {
			t.Fatalf("at %v: deadline %v, want %v", st.now, got, st.want)
		}
	}
	for bound, want := range map[time.Duration]time.Duration{16 * s: s, 200 * time.Millisecond: 25 * time.Millisecond} {
		c, _ := loopback(t, WithStallBound(d.DialContext, bound))
		if got := c.(*stallBoundConn).slack; got != want {
			t.Errorf("slack of %v is %v, want %v", bound, got, want)
		}
	}
	if c, _ := loopback(t, WithStallBound(d.DialContext, 0)); !isBare(c) {
		t.Errorf("a zero bound wrapped the connection: %T", c)
	}
}

func isBare(c net.Conn) bool { _, ok := c.(*net.TCPConn); return ok }

// TestWithStallBound: on real loopback connections, each kind of stall is
// cut after the bound and not before; a connection that keeps moving is
// not cut at all.
func TestWithStallBound(t *testing.T) {
	const bound = 200 * time.Millisecond
	var d net.Dialer
	dial := WithStallBound(d.DialContext, bound)
	wantCut := func(t *testing.T, from time.Time, err error) {
		t.Helper()
		took := time.Since(from)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("after %v: %v, want a deadline exceeded", took, err)
		}
		if took < bound {
			t.Fatalf("cut after %v, before the bound %v", took, bound)
		}
	}

	t.Run("read that waits", func(t *testing.T) {
		c, _ := loopback(t, dial)
		start := time.Now()
		_, err := c.Read(make([]byte, 1))
		wantCut(t, start, err)
	})
	t.Run("write the peer does not take", func(t *testing.T) {
		c, _ := loopback(t, dial)
		buf := make([]byte, 64<<10)
		var err error
		var start time.Time
		for err == nil {
			// The write that blocks is timed from its start.
			start = time.Now()
			_, err = c.Write(buf)
		}
		wantCut(t, start, err)
	})
	t.Run("reads that keep coming", func(t *testing.T) {
		// A byte every tenth of a (longer) bound for one and a half
		// bounds: a deadline set once and never moved would cut it, and
		// a loaded machine may delay a tick by most of a bound.
		const bound = time.Second
		c, peer := loopback(t, WithStallBound(d.DialContext, bound))
		const n = 15
		go func() {
			tick := time.NewTicker(bound / 10)
			defer tick.Stop()
			for range n {
				<-tick.C
				if _, err := peer.Write([]byte{'x'}); err != nil {
					return
				}
			}
		}()
		buf := make([]byte, 1)
		for i := range n {
			if _, err := c.Read(buf); err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
		}
	})
	t.Run("answer awaited from the request's write", func(t *testing.T) {
		// An idle connection's pending read, then a request written on
		// it: the wait for the answer counts from the write, not from
		// when the read began.
		c, _ := loopback(t, dial)
		cut := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 1))
			cut <- err
		}()
		<-time.After(bound * 3 / 4) // idle for most of a bound
		written := time.Now()
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		wantCut(t, written, <-cut)
	})
	t.Run("deadline set from outside", func(t *testing.T) {
		c, peer := loopback(t, dial)
		if _, err := peer.Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(make([]byte, 1)); err != nil { // arms the read deadline
			t.Fatal(err)
		}
		// A deadline in the past, set from outside, replaces the bound's;
		// the next read arms the bound again rather than fail at once.
		if err := c.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err := c.Read(make([]byte, 1))
		wantCut(t, start, err)
	})
}
