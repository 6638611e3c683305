package webhooks

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Parsers read one to three members of bodies they otherwise skip, on the
// hot path of every captured webhook, so they use gjson: one validation
// pass, then a scan per member that stops where the member is, without
// reflection and without allocating for what is skipped. Against
// encoding/json into a struct this cut BenchmarkParseGitHub about fourfold.
//
// The answers are those of the encoding/json struct decoding this
// replaced: a body that is not a JSON object (after white space), is not
// valid JSON, or nests deeper than encoding/json allowed is refused, and
// so is one with a member a struct field could not hold (a string where an
// object is expected, a number where a string is); null is absent; strings
// are made valid UTF-8 the same way. Two things differ, on bodies no
// provider sends:
//   - Member names match case-sensitively: {"Installation":…} has no
//     installation. encoding/json folded case; Sentry's json.loads does
//     not, so this is closer to what the region does.
//   - When a name is repeated the first member counts; json.loads (and
//     encoding/json) take the last. That is acceptable: the region parses
//     the body again itself, and a configured signature covers the bytes.
// jsonutil_test.go checks the readers against the old decoding.

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// flexID is an id that providers send as a JSON number or a string.
type flexID string

// UnmarshalJSON serves the claims of Jira Server's JWT, which the jwt
// package decodes with encoding/json; bodies are read with idOf.
func (f *flexID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexID(s)
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		*f = ""
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		// Objects, arrays and booleans are not ids; ignore rather than
		// reject the whole body.
		*f = ""
		return nil
	}
	*f = flexID(n.String())
	return nil
}

// int64 returns the id as an integer; ok is false when it is not one.
func (f flexID) int64() (int64, bool) {
	n, err := strconv.ParseInt(string(f), 10, 64)
	return n, err == nil
}

type jsonError string

func (e jsonError) Error() string { return string(e) }

const (
	errNotObject   = jsonError("body is not a JSON object")
	errInvalidJSON = jsonError("body is not valid JSON")
	errMemberType  = jsonError("a body member has the wrong JSON type")
)

// maxJSONDepth is encoding/json's nesting limit. It also bounds the
// recursion of gjson's validator, which would otherwise follow a 10 MB
// body of "[" a few million frames deep.
const maxJSONDepth = 10000

// A jsonPath names a member nested in objects, such as installation.id.
type jsonPath struct {
	path    string   // the gjson path, names escaped
	parents []string // the gjson paths of the enclosing members, outermost first
}

func pathOf(names ...string) jsonPath {
	var p jsonPath
	for i, n := range names {
		if i > 0 {
			p.parents = append(p.parents, p.path)
			p.path += "."
		}
		p.path += gjson.Escape(n)
	}
	return p
}

// jsonObject is a body that is a valid JSON object, read a member at a
// time. bad records a member of the wrong type, as a struct decoding
// would have failed on it; check it (or err) after the reads.
type jsonObject struct {
	body []byte
	bad  bool
}

// parseObject checks that body, less surrounding white space, is a JSON
// object: the rule decodeJSON applied before any field was decoded.
func parseObject(body []byte) (jsonObject, error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return jsonObject{}, errNotObject
	}
	if tooDeep(b) || !gjson.ValidBytes(b) {
		return jsonObject{}, errInvalidJSON
	}
	return jsonObject{body: b}, nil
}

func (o *jsonObject) err() error {
	if o.bad {
		return errMemberType
	}
	return nil
}

// member returns the value at p (Exists is false when it is absent). An
// absent member whose enclosing member is neither an object nor null marks
// the body bad. The results own their text: the body's buffer is reused
// once the request is served.
func (o *jsonObject) member(p jsonPath) gjson.Result {
	r := gjson.GetBytes(o.body, p.path)
	if r.Exists() || len(p.parents) == 0 {
		return r
	}
	// Rare: find out why it is absent.
	for _, pp := range p.parents {
		switch up := gjson.GetBytes(o.body, pp); {
		case !up.Exists() || up.Type == gjson.Null:
			return r
		case !up.IsObject():
			o.bad = true
			return r
		}
	}
	return r
}

func (o *jsonObject) id(p jsonPath) flexID { return idOf(o.member(p)) }

func (o *jsonObject) str(p jsonPath) string {
	s, ok := stringOf(o.member(p))
	if !ok {
		o.bad = true
	}
	return s
}

func (o *jsonObject) int(p jsonPath) int64 {
	n, ok := intOf(o.member(p))
	if !ok {
		o.bad = true
	}
	return n
}

// idOf reads a flexID: a number keeps its text ("5001", "1e3"), a string
// is unquoted, and anything else (null, an object, an array, a boolean)
// is no id.
func idOf(r gjson.Result) flexID {
	switch r.Type {
	case gjson.Number:
		return flexID(r.Raw)
	case gjson.String:
		return flexID(validUTF8(r.Str))
	}
	return ""
}

// stringOf reads a member declared a string: absent or null is "", and ok
// is false for any other type.
func stringOf(r gjson.Result) (s string, ok bool) {
	switch r.Type {
	case gjson.String:
		return validUTF8(r.Str), true
	case gjson.Null:
		return "", true
	}
	return "", false
}

// intOf reads a member declared an integer: absent or null is 0, and ok is
// false for any other type and for numbers that are not integers in range
// (1.0 and 1e0 included, as encoding/json refused them).
func intOf(r gjson.Result) (n int64, ok bool) {
	switch r.Type {
	case gjson.Number:
		n, err := strconv.ParseInt(r.Raw, 10, 64)
		return n, err == nil
	case gjson.Null:
		return 0, true
	}
	return 0, false
}

// objectOrNull reports whether r could decode into a struct: an object,
// null or absent.
func objectOrNull(r gjson.Result) bool { return r.Type == gjson.Null || r.IsObject() }

// validUTF8 replaces each byte that is not part of valid UTF-8 with U+FFFD,
// as encoding/json does when it unquotes a string (gjson keeps the bytes).
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// tooDeep reports whether b nests objects and arrays deeper than
// maxJSONDepth. Only a body with that many brackets can, so the exact scan
// runs for none but pathological bodies.
func tooDeep(b []byte) bool {
	if len(b) <= 2*maxJSONDepth || bytes.Count(b, []byte("{"))+bytes.Count(b, []byte("[")) <= maxJSONDepth {
		return false
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
			if depth > maxJSONDepth {
				return true
			}
		case '}', ']':
			depth--
		}
	}
	return false
}

// mod100 returns a non-negative bucket id in [0,100).
func mod100(n int64) int64 {
	m := n % 100
	if m < 0 {
		m = -m
	}
	return m
}
