package httpx

import (
	"net/http"
	"net/url"
	"testing"
)

func TestRemoveHopByHop(t *testing.T) {
	h := http.Header{
		"Connection":        {"keep-alive, X-Private , upgrade"},
		"Keep-Alive":        {"timeout=5"},
		"Transfer-Encoding": {"chunked"},
		"Trailers":          {"x"},
		"Proxy-Connection":  {"close"},
		"X-Private":         {"secret-hop"},
		"Upgrade":           {"h2c"},
		"Content-Type":      {"application/json"},
		"X-Hub-Signature":   {"sha1=ab"},
	}
	RemoveHopByHop(h)
	if len(h) != 2 || h.Get("Content-Type") == "" || h.Get("X-Hub-Signature") == "" {
		t.Fatalf("left %v; want Content-Type and X-Hub-Signature only", h)
	}
	if ConnectionTokens(http.Header{}) != nil {
		t.Fatal("no Connection header: want nil")
	}
	for name, want := range map[string]bool{"Te": true, "Proxy-Authorization": true, "Host": false, "Content-Length": false} {
		if IsHopByHop(name) != want {
			t.Errorf("IsHopByHop(%q) = %v", name, !want)
		}
	}
}

func TestJoinURL(t *testing.T) {
	for _, tc := range []struct{ base, uri, want string }{
		{"http://10.0.0.5:8010", "/extensions/github/webhook/?x=1&x=2", "http://10.0.0.5:8010/extensions/github/webhook/?x=1&x=2"},
		{"http://10.0.0.5:8010/", "/a", "http://10.0.0.5:8010/a"},
		{"https://de.internal/prefix/", "/a%2Fb?q=%20", "https://de.internal/prefix/a%2Fb?q=%20"},
		{"https://de.internal/pre%20fix", "_health/", "https://de.internal/pre%20fix/_health/"},
	} {
		base, err := url.Parse(tc.base)
		if err != nil {
			t.Fatal(err)
		}
		if got := JoinURL(base, tc.uri); got != tc.want {
			t.Errorf("JoinURL(%s, %s) = %s, want %s", tc.base, tc.uri, got, tc.want)
		}
	}
}
