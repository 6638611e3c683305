package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// rawClient is a wrk-like HTTP/1.1 client: each request is bytes the
// caller rendered, written on a keep-alive connection, and the answer is
// read only as far as its status and Content-Length. It exists because on
// a 2-CPU machine Go's http.Client costs the load generator ~55 µs of CPU
// per request, a quarter of the machine at 10,000 requests/s, taken from
// the server and database being measured. Idle connections wait in a
// channel, so a closed loop reuses one per worker and an open loop grows
// to the number of requests in flight.
type rawClient struct {
	addr string
	idle chan *rawConn
}

type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

func newRawClient(addr string, maxConns int) *rawClient {
	return &rawClient{addr: addr, idle: make(chan *rawConn, maxConns)}
}

// errStatus is an answer whose status was not the wanted one.
type errStatus int

func (e errStatus) Error() string { return "status " + strconv.Itoa(int(e)) }

// do writes req and reads the answer; it returns errStatus when the
// status is not want.
func (rc *rawClient) do(ctx context.Context, req []byte, want int) error {
	var conn *rawConn
	select {
	case conn = <-rc.idle:
	default:
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", rc.addr)
		if err != nil {
			return err
		}
		conn = &rawConn{c: c, br: bufio.NewReaderSize(c, 4096)}
	}
	_ = conn.c.SetDeadline(time.Now().Add(30 * time.Second))
	status, keep, err := conn.roundTrip(req)
	if err != nil || !keep {
		conn.c.Close()
	} else {
		select {
		case rc.idle <- conn:
		default:
			conn.c.Close()
		}
	}
	if err != nil {
		return err
	}
	if status != want {
		return errStatus(status)
	}
	return nil
}

func (c *rawConn) roundTrip(req []byte) (status int, keepAlive bool, err error) {
	if _, err := c.c.Write(req); err != nil {
		return 0, false, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 202 Accepted\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	length, keepAlive := -1, true
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, err = strconv.Atoi(string(value))
			if err != nil {
				return 0, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			keepAlive = false
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, false, errors.New("chunked answers are not supported by the bench client")
		}
	}
	if length < 0 {
		return 0, false, errors.New("answer without Content-Length")
	}
	if _, err := c.br.Discard(length); err != nil {
		return 0, false, err
	}
	return status, keepAlive, nil
}

// Close closes the idle connections.
func (rc *rawClient) Close() {
	for {
		select {
		case c := <-rc.idle:
			c.c.Close()
		default:
			return
		}
	}
}
