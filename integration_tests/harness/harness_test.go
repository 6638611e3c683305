package harness

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; left out under -short")
	}
}

func siteConf(admin, site *Port, body string) string {
	return fmt.Sprintf("{\n%s}\nhttp://%s {\n\trespond %q\n}\n", GlobalOptions(admin), site.Addr, body)
}

func get(t *testing.T, p *Port) string {
	t.Helper()
	resp, err := Get(p.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestStartReloadKillRestart(t *testing.T) {
	skipShort(t)
	admin, site := ReservePort(t), ReservePort(t)
	c := Start(t, admin, siteConf(admin, site, "one"))
	if got := get(t, site); got != "one" {
		t.Fatalf("got %q", got)
	}
	c.Reload(t, siteConf(admin, site, "two"))
	if got := get(t, site); got != "two" {
		t.Fatalf("after reload got %q", got)
	}
	c.Kill()
	if c.Running() {
		t.Fatal("still running after Kill")
	}
	c.Restart(t)
	if got := get(t, site); got != "two" {
		t.Fatalf("after restart got %q", got)
	}
}

// The child is the only owner of its listeners: once it is dead its ports
// refuse connections (as a crashed server's do, nothing queues), nobody
// else can bind them, and a restart serves on them again.
func TestPortsWhileTheProcessIsDown(t *testing.T) {
	skipShort(t)
	admin, site := ReservePort(t), ReservePort(t)
	c := Start(t, admin, siteConf(admin, site, "up"))
	c.Kill()
	for _, p := range []*Port{admin, site} {
		conn, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
		if err == nil {
			conn.Close()
			t.Fatalf("%s accepted a connection with the process dead", p.Addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s with the process dead: %v, want connection refused", p.Addr, err)
		}
		if l, err := net.Listen("tcp", p.Addr); err == nil {
			l.Close()
			t.Fatalf("another listener could bind reserved %s", p.Addr)
		}
	}
	c.Restart(t)
	if got := get(t, site); got != "up" {
		t.Fatalf("after restart got %q", got)
	}
}

// A config that adapts but does not load: Launch returns Caddy's reason
// (sent with its readiness notification) instead of waiting.
func TestLaunchReportsALoadFailure(t *testing.T) {
	skipShort(t)
	admin, site := ReservePort(t), ReservePort(t)
	conf := fmt.Sprintf("{\n%s}\nhttp://%s {\n\tlog {\n\t\toutput file /dev/null/no/such.log\n\t}\n\trespond \"x\"\n}\n", GlobalOptions(admin), site.Addr)
	c, err := Launch(Binary(t), t.TempDir(), admin, conf)
	if err == nil {
		c.Stop()
		t.Fatal("a config whose log file cannot be opened was launched")
	}
	if !strings.Contains(err.Error(), "could not load its config") || !strings.Contains(err.Error(), "/dev/null/no/such.log") {
		t.Fatalf("the error does not give Caddy's reason: %v", err)
	}
}

// The kernel never hands a reserved port to anyone who asks it for one:
// not to listen(:0), not as an outgoing connection's source port. (A port
// taken by closing a listener, as the harness used to, came back 8 times
// in 30 000 listen(:0) calls on this machine.)
func TestReservedPortIsNeverHandedOut(t *testing.T) {
	p := ReservePort(t)
	for range 20000 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		got := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if got == p.Num {
			t.Fatalf("listen(:0) was given reserved port %d", got)
		}
	}
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for range 3000 {
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		got := c.LocalAddr().(*net.TCPAddr).Port
		c.Close()
		if got == p.Num {
			t.Fatalf("an outgoing connection was given reserved port %d", got)
		}
	}
}

// An in-process server goes down and comes back at the same address.
func TestPortListenCloseListen(t *testing.T) {
	p := ReservePort(t)
	for range 2 {
		l, err := p.Listen()
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "here") })}
		go srv.Serve(l)
		if got := get(t, p); got != "here" {
			t.Fatalf("got %q", got)
		}
		srv.Close()
		if conn, err := net.Dial("tcp", p.Addr); err == nil {
			conn.Close()
			t.Fatal("connected with the server closed")
		}
	}
}
