package store

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"testing"
)

// marshalHeaders is what encodeHeaders replaced: the canonical-name map
// through json.Marshal (merging names in byte order, where the old code
// took map order). Rows written before and after must be alike.
func marshalHeaders(h http.Header) string {
	out := make(map[string][]string, len(h))
	for _, k := range slices.Sorted(maps.Keys(h)) {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		out[ck] = append(out[ck], h[k]...)
	}
	b, _ := json.Marshal(out)
	return string(b)
}

func TestEncodeHeadersMatchesJSON(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
	}{
		{"empty", http.Header{}},
		{"nil", nil},
		{"github", http.Header{
			"Content-Type":        {"application/json"},
			"X-Github-Delivery":   {"72d3162e-cc78-11e3-81ab-4c9367dc0958"},
			"X-Hub-Signature-256": {"sha256=0123"},
		}},
		{"several values keep their order", http.Header{"Accept": {"b", "a", "c"}}},
		{"non-canonical names merge", http.Header{"x-custom": {"1"}, "X-Custom": {"2"}, "X-CUSTOM": {"3"}}},
		{"nil value list", http.Header{"X-Empty": nil}},
		{"empty value", http.Header{"X-Empty": {""}}},
		{"quotes and backslashes", http.Header{"X-Q": {`a"b\c`}}},
		{"html characters", http.Header{"X-H": {"<script>&</script>"}}},
		{"control bytes", http.Header{"X-C": {"a\x00b\tc\x7f"}}},
		{"utf-8", http.Header{"X-U": {"héllo \u2028 ✓"}}},
		{"invalid utf-8", http.Header{"X-I": {"\xff\xfe ok"}}},
		{"name needing escapes", http.Header{"X\"Odd": {"v"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := encodeHeaders(tt.h)
			if err != nil {
				t.Fatal(err)
			}
			if want := marshalHeaders(tt.h); got != want {
				t.Fatalf("encodeHeaders = %s\nwant %s", got, want)
			}
			if _, err := decodeHeaders(got); err != nil {
				t.Fatalf("decodeHeaders(%s): %v", got, err)
			}
		})
	}
}

func FuzzEncodeHeaders(f *testing.F) {
	f.Add("X-Github-Delivery", "abc", "content-type", "application/json")
	f.Add("x\"y", "\xff<>&", "X-A", "\x00")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		h := http.Header{k1: {v1, v2}, k2: {v2}}
		got, err := encodeHeaders(h)
		if err != nil {
			t.Fatal(err)
		}
		if want := marshalHeaders(h); got != want {
			t.Fatalf("encodeHeaders = %s\nwant %s", got, want)
		}
	})
}

func BenchmarkEncodeHeaders(b *testing.B) {
	h := http.Header{
		"Content-Type":        {"application/json"},
		"User-Agent":          {"GitHub-Hookshot/abc123"},
		"X-Github-Delivery":   {"72d3162e-cc78-11e3-81ab-4c9367dc0958"},
		"X-Github-Event":      {"push"},
		"X-Github-Hook-Id":    {"123456"},
		"X-Hub-Signature":     {"sha1=0123456789abcdef0123456789abcdef01234567"},
		"X-Hub-Signature-256": {"sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		"Content-Length":      {"1324"},
		"Accept":              {"*/*"},
	}
	b.Run("hand", func(b *testing.B) {
		for b.Loop() {
			_, _ = encodeHeaders(h)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			_ = marshalHeaders(h)
		}
	})
}

// TestIsCanonicalKeyAgreesWithTextproto holds the fast path of
// encodeHeaders to CanonicalMIMEHeaderKey: a key it calls canonical must
// be returned unchanged by it.
func TestIsCanonicalKeyAgreesWithTextproto(t *testing.T) {
	for _, k := range []string{"", "A", "a", "-", "Content-Type", "content-type", "Content-type", "X-Hub-Signature-256",
		"X-GitHub-Event", "X-Github-Event", "X--Y", "-Foo", "Foo-", "1a", "A1b-2c", "X_Forwarded", "Foo Bar", "Ünï", "Foo\x00"} {
		if isCanonicalKey(k) && textproto.CanonicalMIMEHeaderKey(k) != k {
			t.Errorf("isCanonicalKey(%q) is true, CanonicalMIMEHeaderKey gives %q", k, textproto.CanonicalMIMEHeaderKey(k))
		}
		if want := textproto.CanonicalMIMEHeaderKey(k) == k && k != "" && strings.Trim(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == ""; isCanonicalKey(k) != want {
			t.Errorf("isCanonicalKey(%q) = %v, want %v", k, !want, want)
		}
	}
}
