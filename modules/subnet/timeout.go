package subnet

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// MaxTimeout caps what a caller may ask for in HeaderTimeout, so one
// region cannot pin proxy connections for hours.
const MaxTimeout = 5 * time.Minute

// ParseTimeout reads HeaderTimeout: "<seconds>" (both timeouts) or
// "<connect>,<read>" in seconds, as Python's float() would read them.
// Values that are not positive finite numbers make ok false, and the
// caller then uses its default; values above MaxTimeout are capped.
func ParseTimeout(v string) (connect, read time.Duration, ok bool) {
	if v == "" || len(v) > 64 {
		return 0, 0, false
	}
	c, r, pair := strings.Cut(v, ",")
	connect, ok = parseSeconds(c)
	if !ok {
		return 0, 0, false
	}
	if !pair {
		return connect, connect, true
	}
	read, ok = parseSeconds(r)
	if !ok {
		return 0, 0, false
	}
	return connect, read, true
}

func parseSeconds(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsAny(s, "_xXpP") {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		return 0, false
	}
	if f >= MaxTimeout.Seconds() {
		return MaxTimeout, true
	}
	d := time.Duration(f * float64(time.Second))
	if d <= 0 {
		return 0, false
	}
	return d, true
}

// FormatTimeout renders HeaderTimeout for a connect and a read timeout.
func FormatTimeout(connect, read time.Duration) string {
	return strconv.FormatFloat(connect.Seconds(), 'f', -1, 64) + "," +
		strconv.FormatFloat(read.Seconds(), 'f', -1, 64)
}
