package webhookcapture

import (
	"net/http"
	"slices"
	"testing"
)

func TestAddPeer(t *testing.T) {
	tests := []struct {
		name   string
		sent   []string
		remote string
		want   []string // nil: no header
	}{
		{"none sent", nil, "203.0.113.7:4321", []string{"203.0.113.7"}},
		{"forged", []string{"6.6.6.6"}, "203.0.113.7:4321", []string{"6.6.6.6, 203.0.113.7"}},
		{"lines folded", []string{"1.1.1.1, 2.2.2.2", "3.3.3.3"}, "203.0.113.7:1", []string{"1.1.1.1, 2.2.2.2, 3.3.3.3, 203.0.113.7"}},
		{"empty value", []string{""}, "203.0.113.7:1", []string{"203.0.113.7"}},
		{"IPv6 with a zone", nil, "[fe80::1%eth0]:443", []string{"fe80::1"}},
		{"IPv6", []string{"6.6.6.6"}, "[2001:db8::1]:443", []string{"6.6.6.6, 2001:db8::1"}},
		{"Unix socket keeps what was sent", []string{"6.6.6.6"}, "@", []string{"6.6.6.6"}},
		{"Unix socket, none sent", nil, "@", nil},
		{"unparsable peer drops the header", []string{"6.6.6.6"}, "garbage", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Content-Type": {"application/json"}}
			if tc.sent != nil {
				h["X-Forwarded-For"] = slices.Clone(tc.sent)
			}
			addPeer(h, tc.remote)
			got := h
			if v, ok := got["X-Forwarded-For"]; !slices.Equal(v, tc.want) || ok != (tc.want != nil) {
				t.Fatalf("X-Forwarded-For = %q (present %v), want %q", v, ok, tc.want)
			}
			if got.Get("Content-Type") != "application/json" {
				t.Fatalf("other headers lost: %v", got)
			}
		})
	}
}

func BenchmarkAddPeer(b *testing.B) {
	h := http.Header{}
	for _, k := range []string{"Content-Type", "User-Agent", "X-Github-Event", "X-Github-Hook-Id", "X-Github-Delivery",
		"X-Hub-Signature", "X-Hub-Signature-256", "Accept", "Content-Length", "X-Forwarded-For"} {
		h[k] = []string{"value"}
	}
	b.ReportAllocs()
	sent := h[forwardedFor]
	for b.Loop() {
		h[forwardedFor] = sent
		addPeer(h, "192.0.2.1:5555")
	}
}
