package admin

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// params reads a request's query, refusing what the route does not take:
// an unknown name (a misspelt filter would otherwise match, and replay or
// delete, everything), a repeated one, or an empty value.
func params(r *http.Request, accepted ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("invalid query string: %v", err)
	}
	for name, vs := range q {
		if !slices.Contains(accepted, name) {
			if len(accepted) == 0 {
				return nil, badRequest("unknown parameter %q: this route takes none", name)
			}
			return nil, badRequest("unknown parameter %q: this route takes %s", name, strings.Join(accepted, ", "))
		}
		if len(vs) > 1 {
			return nil, badRequest("parameter %q is given %d times", name, len(vs))
		}
		if vs[0] == "" {
			return nil, badRequest("parameter %q is empty", name)
		}
	}
	return q, nil
}

// Filter names of the row listings and the bulk actions.
var (
	rowFilters        = []string{"mailbox", "provider", "region", "since", "until"}
	deadLetterFilters = append(slices.Clone(rowFilters), "reason")
	deliveredFilters  = append(slices.Clone(rowFilters), "status")
	pageParams        = []string{"limit", "after"}
)

// with returns names followed by more.
func with(names []string, more ...string) []string { return append(slices.Clone(names), more...) }

// maxName bounds a name given as a filter or in a path.
const maxName = 512

func checkName(what, v string) error {
	if len(v) > maxName {
		return badRequest("%s: longer than %d bytes", what, maxName)
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f {
			return badRequest("%s %q: control characters are not allowed", what, v)
		}
	}
	return nil
}

// filter reads the row filters present in q.
func filter(q url.Values) (store.RowFilter, error) {
	var f store.RowFilter
	for name, dst := range map[string]*string{"mailbox": &f.Mailbox, "provider": &f.Provider, "region": &f.Region} {
		if v := q.Get(name); v != "" {
			if err := checkName(name, v); err != nil {
				return f, err
			}
			*dst = v
		}
	}
	if v := q.Get("reason"); v != "" {
		if !validReason(v) {
			return f, badRequest("reason %q: must be %s, %s, %s, %s or dropped_<status> (e.g. dropped_404)", v,
				store.ReasonAttemptsExceeded, store.ReasonMaxAge, store.ReasonCallbackRefused, store.ReasonCallbackFailed)
		}
		f.Reason = v
	}
	if v := q.Get("status"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 599 {
			return f, badRequest("status %q: must be an HTTP status from 100 to 599", v)
		}
		f.Status = n
	}
	var err error
	if f.Since, err = timeParam(q, "since"); err != nil {
		return f, err
	}
	if f.Until, err = timeParam(q, "until"); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, badRequest("since (%s) must be before until (%s)", q.Get("since"), q.Get("until"))
	}
	return f, nil
}

func validReason(v string) bool {
	switch v {
	case store.ReasonAttemptsExceeded, store.ReasonMaxAge, store.ReasonCallbackRefused, store.ReasonCallbackFailed:
		return true
	}
	code, ok := strings.CutPrefix(v, store.ReasonDropped)
	n, err := strconv.Atoi(code)
	return ok && err == nil && n >= 100 && n <= 599
}

func timeParam(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badRequest("%s %q: must be an RFC 3339 time such as 2026-12-02T10:00:00Z", name, v)
	}
	return t.UTC(), nil
}

// intParam reads a bounded integer, def when absent.
func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("%s must be an integer from %d to %d, got %q", name, lo, hi, v)
	}
	return n, nil
}

// limit reads the page size.
func limit(q url.Values) (int, error) { return intParam(q, "limit", DefaultPage, 1, MaxPage) }

// boolParam reads true or false, false when absent.
func boolParam(q url.Values, name string) (bool, error) {
	switch v := q.Get(name); v {
	case "":
		return false, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	default:
		return false, badRequest("%s must be true or false, got %q", name, v)
	}
}

// id reads a row id from a path segment.
func id(seg string) (int64, error) {
	n, err := strconv.ParseInt(seg, 10, 64)
	if err != nil || n <= 0 {
		return 0, badRequest("id must be a positive integer, got %q", seg)
	}
	return n, nil
}

// Cursors are opaque strings: base64url of "<kind>:<position>", where the
// kind ties a cursor to the listing (and sort) that gave it.
func encodeCursor(kind, pos string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + ":" + pos))
}

// decodeCursor reads the after parameter of a listing of that kind; ""
// when absent.
func decodeCursor(q url.Values, kind string) (string, error) {
	v := q.Get("after")
	if v == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	pos, ok := strings.CutPrefix(string(b), kind+":")
	if err != nil || !ok {
		return "", badRequest("after %q: not a cursor of this listing (pass back its next verbatim, with the same sort)", v)
	}
	return pos, nil
}

// idCursor reads an id cursor; 0 when absent.
func idCursor(q url.Values, kind string) (int64, error) {
	pos, err := decodeCursor(q, kind)
	if err != nil || pos == "" {
		return 0, err
	}
	n, err := strconv.ParseInt(pos, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("after: not a cursor of this listing")
	}
	return n, nil
}
