package store

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/textproto"
	"slices"
)

// encodeHeaders renders the request headers as the JSON text stored in
// request_headers: canonical name -> every value, in order, names sorted
// (what json.Marshal of the map gives; TestEncodeHeadersMatchesJSON holds
// it to that, and names differing only in case merge in byte order). Sentry stores name -> one string; we keep multi-valued
// headers because the region re-verifies signatures over exactly what the
// provider sent. It is written by hand because it runs for every captured
// webhook, where json.Marshal's reflection and map sorting showed in
// profiles.
func encodeHeaders(h http.Header) (string, error) {
	return string(appendHeaders(make([]byte, 0, 64*len(h)), h)), nil
}

// appendHeaders appends the text encodeHeaders returns to b. The
// PostgreSQL insert writes it straight into its parameter buffer, with no
// string per row in between (1.2 KB of garbage per GitHub delivery).
func appendHeaders(b []byte, h http.Header) []byte {
	var sorted [32]string // a webhook's headers, without allocating
	names := sorted[:0]
	canonical := true
	for k := range h {
		ck := k
		if !isCanonicalKey(k) {
			ck = textproto.CanonicalMIMEHeaderKey(k)
		}
		canonical = canonical && ck == k
		names = append(names, ck)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	values := func(name string) []string { return h[name] }
	if !canonical {
		// Names that canonicalise alike merge, in the byte order of the
		// names as received, so the stored text is deterministic.
		raw := slices.Sorted(maps.Keys(h))
		merged := make(map[string][]string, len(h))
		for _, k := range raw {
			ck := textproto.CanonicalMIMEHeaderKey(k)
			merged[ck] = append(merged[ck], h[k]...)
		}
		values = func(name string) []string { return merged[name] }
	}
	b = append(b, '{')
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, name)
		b = append(b, ':')
		vs := values(name)
		if vs == nil {
			b = append(b, "null"...)
			continue
		}
		b = append(b, '[')
		for j, v := range vs {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, v)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string the way encoding/json
// writes it. Header text is printable ASCII almost always; anything else
// (control bytes, HTML characters json escapes, non-ASCII, invalid UTF-8)
// goes through json.Marshal so the stored text stays identical.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !jsonPlain[s[i]] {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// decodeHeaders reads request_headers. It also accepts Sentry's own shape
// (name -> one string), so rows copied from hybridcloud_webhookpayload
// replay too.
func decodeHeaders(s string) (http.Header, error) {
	if s == "" {
		return http.Header{}, nil
	}
	var multi map[string][]string
	if err := json.Unmarshal([]byte(s), &multi); err == nil {
		return http.Header(multi), nil
	}
	var single map[string]string
	if err := json.Unmarshal([]byte(s), &single); err != nil {
		return nil, fmt.Errorf("decode request headers: %w", err)
	}
	h := make(http.Header, len(single))
	for k, v := range single {
		h[textproto.CanonicalMIMEHeaderKey(k)] = []string{v}
	}
	return h, nil
}

// destinationOf fills the default destination type.
func destinationOf(p *NewPayload) string {
	if p.DestinationType == "" {
		return DestinationRegion
	}
	return p.DestinationType
}

// checkInsert checks a whole batch before any database work, so one bad
// payload never fails a group commit half-way.
func checkInsert(payloads []NewPayload) error {
	for i := range payloads {
		if err := payloads[i].Validate(); err != nil {
			return err
		}
	}
	return nil
}

// prepareInsert is checkInsert, then each payload's headers encoded, for
// the inserts that take them as strings (SQLite's, PostgreSQL's COPY).
func prepareInsert(payloads []NewPayload) (headers []string, err error) {
	if err := checkInsert(payloads); err != nil {
		return nil, err
	}
	headers = make([]string, len(payloads))
	for i := range payloads {
		if headers[i], err = encodeHeaders(payloads[i].Headers); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidPayload, err)
		}
	}
	return headers, nil
}

// dedupKey identifies a pending payload for de-duplication.
type dedupKey struct{ mailbox, key string }

// jsonPlain[c] is true for the bytes encoding/json writes as they are in
// a string: printable ASCII less '"', '\\' and the HTML characters it
// escapes. One load per byte instead of seven comparisons: appendJSONString
// was 6.3k of encodeHeaders' 17.7k instructions for nine GitHub headers.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// isCanonicalKey reports whether k is made of letters, digits and '-' in
// canonical case (upper at the start and after '-', lower elsewhere), as
// net/http gives every header it parsed: CanonicalMIMEHeaderKey returns
// such a key unchanged. It is false for anything else, which then goes
// through CanonicalMIMEHeaderKey; that was 4k instructions per nine names.
func isCanonicalKey(k string) bool {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case 'A' <= c && c <= 'Z':
			if !upper {
				return false
			}
		case 'a' <= c && c <= 'z':
			if upper {
				return false
			}
		case '0' <= c && c <= '9', c == '-':
		default:
			return false
		}
		upper = c == '-'
	}
	return len(k) > 0
}
