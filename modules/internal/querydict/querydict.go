// Package querydict reads query strings and form bodies the way the
// region does. Sentry reads them through Django's QueryDict, whose get()
// returns the LAST value of a repeated name (MultiValueDict.__getitem__),
// where Go's url.Values.Get returns the first. The edge routes by these
// values, so it must read the one the region will act on: with
// ?dsn=A&dsn=B the region renders the error page for B, and the gateway
// must send the request to B's region.
package querydict

import "net/url"

// Get returns the last value of key in v, or "" when there is none.
func Get(v url.Values, key string) string {
	vs := v[key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}
