package httpx

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		ip   string
		want Policy
	}{
		{"127.0.0.1", Loopback},
		{"127.255.0.9", Loopback},
		{"::1", Loopback},
		{"::ffff:127.0.0.1", Loopback},
		{"0.0.0.0", Unspecified},
		{"0.1.2.3", Unspecified},
		{"::", Unspecified},
		{"169.254.1.1", LinkLocal},
		{"fe80::1", LinkLocal},
		{"fe80::1%eth0", LinkLocal},
		{"169.254.169.254", LinkLocal | Metadata},
		{"fd00:ec2::254", Private | Metadata},
		{"100.100.100.200", Private | Metadata},
		{"224.0.0.1", Multicast},
		{"239.1.1.1", Multicast},
		{"ff02::1", Multicast},
		{"ff01::1", Multicast},
		{"10.0.0.5", Private},
		{"172.16.0.1", Private},
		{"172.31.255.255", Private},
		{"192.168.1.1", Private},
		{"100.64.0.1", Private},
		{"100.127.255.255", Private},
		{"fc00::1", Private},
		{"fd12:3456::1", Private},
		{"fec0::1", Private},
		{"192.0.2.1", NonGlobal},
		{"198.18.0.1", NonGlobal},
		{"203.0.113.9", NonGlobal},
		{"240.0.0.1", NonGlobal},
		{"255.255.255.255", NonGlobal},
		{"2001:db8::1", NonGlobal},
		{"::7f00:1", NonGlobal},
		// IPv4 embedded in NAT64 and 6to4 addresses counts.
		{"64:ff9b::7f00:1", Loopback},
		{"64:ff9b::a00:5", Private},
		{"64:ff9b::a9fe:a9fe", LinkLocal | Metadata},
		{"2002:7f00:1::1", Loopback},
		{"2002:c0a8:101::1", Private},
		// Global unicast.
		{"8.8.8.8", 0},
		{"140.82.112.5", 0},
		{"172.32.0.1", 0},
		{"100.128.0.1", 0},
		{"2606:4700::1", 0},
		{"64:ff9b::808:808", 0},
		{"2002:808:808::1", 0},
	}
	for _, tc := range tests {
		if got := Classify(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("Classify(%s) = %b, want %b", tc.ip, got, tc.want)
		}
	}
}

func TestPolicies(t *testing.T) {
	tests := []struct {
		ip               string
		notLocal, public bool // refused by NotLocal, by PublicOnly
		wantText         string
	}{
		{"127.0.0.1", true, true, "127.0.0.1 is a loopback address"},
		{"::ffff:127.0.0.1", true, true, "127.0.0.1 is a loopback address"},
		{"169.254.169.254", true, true, "169.254.169.254 is a cloud metadata address"},
		{"fd00:ec2::254", true, true, "is a cloud metadata address"},
		{"0.0.0.0", true, true, "unspecified"},
		{"fe80::1", true, true, "link-local"},
		{"239.1.1.1", true, true, "multicast"},
		{"10.0.0.5", false, true, "10.0.0.5 is a private address"},
		{"192.168.1.1", false, true, "private"},
		{"100.64.0.1", false, true, "private"},
		{"fc00::1", false, true, "private"},
		{"198.18.0.1", false, true, "not a globally routable address"},
		{"140.82.112.5", false, false, ""},
		{"2606:4700::1", false, false, ""},
	}
	for _, tc := range tests {
		ip := netip.MustParseAddr(tc.ip)
		for _, p := range []struct {
			name   string
			policy Policy
			refuse bool
		}{{"NotLocal", NotLocal, tc.notLocal}, {"PublicOnly", PublicOnly, tc.public}} {
			err := p.policy.Check(ip)
			if (err != nil) != p.refuse {
				t.Errorf("%s.Check(%s) = %v, want refused %v", p.name, tc.ip, err, p.refuse)
				continue
			}
			if err == nil {
				continue
			}
			if !errors.Is(err, ErrRefused) || !strings.HasPrefix(err.Error(), "address refused: ") || !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("%s.Check(%s) = %q, want an ErrRefused saying %q", p.name, tc.ip, err, tc.wantText)
			}
			// The same through the Control hook, as a dial calls it.
			if cerr := p.policy.Control("tcp", netip.AddrPortFrom(ip, 443).String(), nil); cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("%s.Control(%s) = %v, want %v", p.name, tc.ip, cerr, err)
			}
		}
		if err := Policy(0).Check(ip); err != nil {
			t.Errorf("the zero policy refused %s: %v", tc.ip, err)
		}
	}
}

func TestNormalHost(t *testing.T) {
	for in, want := range map[string]string{
		"Hooks.Slack.COM.":  "hooks.slack.com",
		"[::1]":             "::1",
		"::FFFF:127.0.0.1":  "127.0.0.1",
		"127.000.0.1":       "127.000.0.1", // not an IP literal netip accepts; stays a name
		"[2001:DB8::1]":     "2001:db8::1",
		"discord.com":       "discord.com",
		"xn--bcher-kva.tld": "xn--bcher-kva.tld",
	} {
		if got := NormalHost(in); got != want {
			t.Errorf("NormalHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// The policy holds at dial time, whatever the URL said: a name that
// resolves to loopback is refused after resolution, and PolicyFor sees the
// host and port the URL named.
func TestDialerEnforcesAtDialTime(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	tests := []struct {
		name    string
		host    string
		policy  func(host, port string) Policy
		refused bool
	}{
		{"loopback literal, public only", "127.0.0.1", nil, true},
		{"loopback by name, public only", "localhost", nil, true},
		{"loopback by name, not local", "localhost", func(string, string) Policy { return NotLocal }, true},
		{"loopback named with its port is allowed", "localhost", func(h, p string) Policy {
			if h == "localhost" && p == port {
				return PublicOnly &^ (Loopback | Private)
			}
			return PublicOnly
		}, false},
		{"nothing refused", "127.0.0.1", func(string, string) Policy { return 0 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &Dialer{Dialer: net.Dialer{Timeout: 5 * time.Second}, PolicyFor: tc.policy}
			client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
			defer client.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(tc.host, port)+"/x", nil)
			resp, err := client.Do(req)
			if resp != nil {
				resp.Body.Close()
			}
			if tc.refused {
				if !errors.Is(err, ErrRefused) {
					t.Fatalf("err = %v, want ErrRefused", err)
				}
				var re *RefusedError
				if !errors.As(err, &re) || Classify(re.Addr)&Loopback == 0 {
					t.Fatalf("err = %v, want a RefusedError naming a loopback address", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v, want the request through", err)
			}
		})
	}
}

func TestParseHostEntry(t *testing.T) {
	tests := []struct {
		entry, host, port, err string
	}{
		{"hooks.example.com", "hooks.example.com", "", ""},
		{" Chat.Corp.:8443 ", "chat.corp", "8443", ""},
		{"127.0.0.1:08443", "127.0.0.1", "8443", ""},
		{"[::1]:443", "::1", "443", ""},
		{"::1", "::1", "", ""},
		{"[2001:db8::1]", "2001:db8::1", "", ""},
		{"", "", "", "want host or host:port"},
		{"https://hooks.example.com", "", "", "want host or host:port"},
		{"user@host", "", "", "want host or host:port"},
		{"host:0", "", "", "bad port"},
		{"host:65536", "", "", "bad port"},
		{"host:http", "", "", "bad port"},
		{":443", "", "", "bad port"},
		{"a:b:c", "", "", "want host or host:port"},
	}
	for _, tc := range tests {
		host, port, err := ParseHostEntry(tc.entry)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseHostEntry(%q) = %q, %q, %v; want error %q", tc.entry, host, port, err, tc.err)
			}
			continue
		}
		if err != nil || host != tc.host || port != tc.port {
			t.Errorf("ParseHostEntry(%q) = %q, %q, %v; want %q, %q", tc.entry, host, port, err, tc.host, tc.port)
		}
	}
}
