package querydict

import (
	"net/url"
	"testing"
)

func TestGetIsTheLastValue(t *testing.T) {
	for _, tc := range []struct{ query, want string }{
		{"dsn=a", "a"},
		{"dsn=a&dsn=b", "b"},
		{"dsn=a&x=1&dsn=", ""}, // Django: the last, even when empty
		{"x=1", ""},
		{"", ""},
	} {
		v, _ := url.ParseQuery(tc.query)
		if got := Get(v, "dsn"); got != tc.want {
			t.Errorf("Get(%q) = %q, want %q", tc.query, got, tc.want)
		}
	}
}
