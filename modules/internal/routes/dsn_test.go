package routes

import "testing"

func TestDSNParamIsTheLast(t *testing.T) {
	for _, tc := range []struct{ query, want string }{
		{"dsn=https://k@o1.ingest.de.sentry.io/1", "https://k@o1.ingest.de.sentry.io/1"},
		{"dsn=https://k@o1.ingest.us.sentry.io/1&x=1&dsn=https%3A%2F%2Fk%40o1.ingest.de.sentry.io%2F1", "https://k@o1.ingest.de.sentry.io/1"},
		{"dsn=a&dsn=", ""},
		{"x=1", ""},
		{"dsn=a;b&dsn=c", "c"}, // a pair Go cannot parse does not hide the others
	} {
		if got := DSNParam(tc.query); got != tc.want {
			t.Errorf("DSNParam(%q) = %q, want %q", tc.query, got, tc.want)
		}
	}
}
