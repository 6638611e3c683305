package routes

import (
	"errors"
	"net/url"
	"strings"

	"github.com/sentrysilo/caddy-silo/modules/internal/querydict"
)

// DSNParam returns the error page's dsn parameter as the region reads it
// (Django's request.GET.get("dsn")): the last of a repeated parameter, so
// that ?dsn=A&dsn=B is sent to the region that renders the page for B.
func DSNParam(rawQuery string) string {
	q, _ := url.ParseQuery(rawQuery)
	return querydict.Get(q, "dsn")
}

// ErrInvalidDSN means the dsn parameter is missing, unparsable or not a
// DSN of this Sentry (its host is not under the url_prefix host).
var ErrInvalidDSN = errors.New("invalid dsn")

// RegionFromDSN names the region of a DSN (§1.3): with appHost
// "sentry.io", "https://k@o1.ingest.de.sentry.io/1" is region "de", while
// "https://k@o1.ingest.sentry.io/1" has too few labels and belongs to the
// default region (def is true, name empty). The caller checks that the
// name is a configured region.
func RegionFromDSN(dsn, appHost string) (name string, def bool, err error) {
	if dsn == "" || appHost == "" {
		return "", false, ErrInvalidDSN
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		return "", false, ErrInvalidDSN
	}
	// Sentry compares the netloc, userinfo included ("k@o1.ingest..."),
	// so label counts include the key's label; u.Host has no userinfo and
	// gives the same count unless the key itself holds dots.
	host := strings.ToLower(u.Host)
	app := strings.ToLower(appHost)
	if host != app && !strings.HasSuffix(host, "."+app) {
		return "", false, ErrInvalidDSN
	}
	hostLabels := strings.Split(host, ".")
	appLabels := strings.Count(app, ".") + 1
	if len(hostLabels)-appLabels < 3 {
		return "", true, nil
	}
	return hostLabels[len(hostLabels)-appLabels-1], false, nil
}
