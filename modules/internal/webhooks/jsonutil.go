package webhooks

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Parsers read one to six members of bodies they otherwise skip, on the
// hot path of every captured webhook, so a jsonReader validates the body
// and reads those members in one pass, without reflection and without
// allocating for what it skips. Against encoding/json into a struct the
// gjson reads this replaced cut BenchmarkParseGitHub about fourfold; the
// one pass is about a fifth faster again than those.
//
// A member name that is repeated counts as its last occurrence, at every
// level, because that is how the region reads the body (Python's
// json.loads keeps the last value) and the edge must route a webhook to
// the region that will find its integration. This is why each object on
// a path is read to its end rather than left at the first match, as
// gjson.Get would: the first-match reader routed
// {"installation":{"id":1},"installation":{"id":999}} by 1, the region by
// 999.
//
// Otherwise the answers are those of the encoding/json struct decoding
// this replaced: a body that is not a JSON object (after white space), is
// not valid JSON, or nests deeper than encoding/json allowed is refused,
// and so is one with a member a struct field could not hold (a string
// where an object is expected, a number where a string is); null is
// absent; strings are made valid UTF-8 the same way. One thing differs,
// on bodies no provider sends: member names match case-sensitively
// ({"Installation":…} has no installation), as json.loads does, where
// encoding/json folded case. jsonutil_test.go checks the readers against
// the old decoding of the body with its repeated names resolved.

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
// recursion of the validator below, which would otherwise follow a 10 MB
// body of "[" a few million frames deep.
const maxJSONDepth = 10000

// maxMembers bounds the members one jsonReader reads (MS Teams reads
// five), so a read keeps them in an array on the stack.
const maxMembers = 8

// A jsonReader reads a fixed set of members, each named by its path of
// member names, from JSON objects. Its paths are added at package
// initialisation and never change after, so a reader is safe for
// concurrent use.
type jsonReader struct {
	root jsonNode
	n    int
}

// jsonNode is one member name on the readers' paths.
type jsonNode struct {
	name     string
	member   int   // index of the path that ends here, or -1
	subtree  []int // indexes of the paths through this name
	children []*jsonNode
}

// A jsonPath is a member of a reader's objects, such as installation.id.
type jsonPath struct{ i int }

// path adds the member at names to the members r reads.
func (r *jsonReader) path(names ...string) jsonPath {
	if r.n == maxMembers || len(names) == 0 {
		panic("webhooks: a jsonReader reads 1 to maxMembers paths of at least one name")
	}
	n := &r.root
	for _, name := range names {
		var next *jsonNode
		for _, c := range n.children {
			if c.name == name {
				next = c
			}
		}
		if next == nil {
			next = &jsonNode{name: name, member: -1}
			n.children = append(n.children, next)
		}
		next.subtree = append(next.subtree, r.n)
		n = next
	}
	if n.member >= 0 {
		panic("webhooks: a jsonReader path added twice")
	}
	n.member = r.n
	r.n++
	return jsonPath{n.member}
}

// jsonObject holds the members a reader read from one object. bad
// records a member of the wrong type, as a struct decoding would have
// failed on it; check it (or err) after the reads.
type jsonObject struct {
	members [maxMembers]gjson.Result
	bad     bool
}

// parse checks that body, less surrounding white space, is a JSON object
// (the rule decodeJSON applied before any field was decoded) and reads
// r's members from it. The results alias body: the readers below copy
// what they keep.
func (r *jsonReader) parse(body []byte) (jsonObject, error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return jsonObject{}, errNotObject
	}
	if tooDeep(b) {
		return jsonObject{}, errInvalidJSON
	}
	var o jsonObject
	// Not string(b): that would copy the body (up to max_body_size) for
	// each parse; gjson.GetBytes aliases it the same way.
	if end := o.object(unsafe.String(unsafe.SliceData(b), len(b)), 0, &r.root); end != len(b) {
		return jsonObject{}, errInvalidJSON
	}
	return o, nil
}

// read reads r's members from obj, a value that is a JSON object.
func (r *jsonReader) read(obj gjson.Result) jsonObject {
	var o jsonObject
	if obj.IsObject() {
		o.object(obj.Raw, 0, &r.root)
	}
	return o
}

// The body is validated and read in one pass, by the functions below: a
// JSON validator (RFC 8259, as strict as encoding/json's, which
// FuzzReadersMatchEncodingJSON checks) that, in the objects on the
// readers' paths, also records the members. Validating with gjson and then
// walking the objects on the paths with a scanner of the same speed cost
// BenchmarkParseGitHub 1.2 times the first-match gjson.Get (the body was
// scanned twice and the repository object three times); this pass costs
// 0.8 times it.

// object validates the object at s[i] == '{' and returns the index after
// it, or -1 when it is not valid JSON. When n is not nil it keeps the last
// occurrence of each of n's member names: a later one clears what an
// earlier one recorded below it. A member on a path that is neither an
// object nor null marks the body bad, as a struct field could not have
// held it.
func (o *jsonObject) object(s string, i int, n *jsonNode) int {
	var badBelow uint8 // bit ci: the last occurrence of child ci is bad
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(s) || s[i] != '"' {
			return -1
		}
		keyStart := i
		var escaped bool
		if i, escaped = validString(s, i); i < 0 {
			return -1
		}
		key := s[keyStart+1 : i-1]
		i = skipSpace(s, i)
		if i >= len(s) || s[i] != ':' {
			return -1
		}
		i = skipSpace(s, i+1)
		valueStart := i
		var c *jsonNode
		ci := 0
		if n != nil && len(n.children) > 0 {
			if escaped {
				key = gjson.Parse(s[keyStart : keyStart+len(key)+2]).Str
			}
			for j, child := range n.children {
				if key == child.name {
					c, ci = child, j
					break
				}
			}
		}
		if c == nil {
			if i = validValue(s, i); i < 0 {
				return -1
			}
		} else {
			for _, m := range c.subtree {
				o.members[m] = gjson.Result{}
			}
			badBelow &^= 1 << ci
			if len(c.children) > 0 && i < len(s) && s[i] == '{' {
				i = o.object(s, i, c)
			} else {
				i = validValue(s, i)
				if len(c.children) > 0 && i >= 0 && s[valueStart:i] != "null" {
					badBelow |= 1 << ci
				}
			}
			if i < 0 {
				return -1
			}
			if c.member >= 0 {
				o.members[c.member] = gjson.Parse(s[valueStart:i])
			}
		}
		i = skipSpace(s, i)
		if i >= len(s) {
			return -1
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case '}':
			if badBelow != 0 {
				o.bad = true
			}
			return i + 1
		default:
			return -1
		}
	}
}

// validValue validates the value at s[i] and returns the index after it,
// or -1.
func validValue(s string, i int) int {
	if i >= len(s) {
		return -1
	}
	switch c := s[i]; {
	case c == '{':
		var o jsonObject
		return o.object(s, i, nil)
	case c == '[':
		i = skipSpace(s, i+1)
		if i < len(s) && s[i] == ']' {
			return i + 1
		}
		for {
			if i = validValue(s, i); i < 0 {
				return -1
			}
			i = skipSpace(s, i)
			if i >= len(s) {
				return -1
			}
			switch s[i] {
			case ',':
				i = skipSpace(s, i+1)
			case ']':
				return i + 1
			default:
				return -1
			}
		}
	case c == '"':
		i, _ = validString(s, i)
		return i
	case c == '-' || c >= '0' && c <= '9':
		return validNumber(s, i)
	case c == 't':
		return literal(s, i, "true")
	case c == 'f':
		return literal(s, i, "false")
	case c == 'n':
		return literal(s, i, "null")
	}
	return -1
}

func literal(s string, i int, lit string) int {
	if strings.HasPrefix(s[i:], lit) {
		return i + len(lit)
	}
	return -1
}

// validString validates the string at s[i] == '"' and returns the index
// after it (or -1), and whether it holds an escape. The bytes that need
// no look (stringPlain) are skipped in a table loop: the switch on every
// byte was 20k of BenchmarkParseGitHub's 42k instructions for a 1.3 KB
// push.
func validString(s string, i int) (int, bool) {
	escaped := false
	j := i + 1
	for {
		for j < len(s) && stringPlain[s[j]] {
			j++
		}
		if j >= len(s) {
			return -1, false
		}
		switch c := s[j]; {
		case c == '"':
			return j + 1, escaped
		case c < ' ':
			return -1, false
		}
		// A backslash.
		escaped = true
		j++
		if j >= len(s) {
			return -1, false
		}
		switch s[j] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		case 'u':
			if j+4 >= len(s) || !isHex(s[j+1]) || !isHex(s[j+2]) || !isHex(s[j+3]) || !isHex(s[j+4]) {
				return -1, false
			}
			j += 4
		default:
			return -1, false
		}
		j++
	}
}

// stringPlain[c] is true for the bytes a JSON string holds as they are:
// all but control bytes, '"' and '\\'.
var stringPlain = func() (t [256]bool) {
	for c := ' '; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// validNumber validates -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// at s[i].
func validNumber(s string, i int) int {
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		i = digitsEnd(s, i)
	default:
		return -1
	}
	if i < len(s) && s[i] == '.' {
		j := digitsEnd(s, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := digitsEnd(s, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digitsEnd(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

func (o *jsonObject) err() error {
	if o.bad {
		return errMemberType
	}
	return nil
}

// member returns the value at p (Exists is false when it is absent). Its
// text may alias the body, whose buffer is reused once the request is
// served: use the typed readers, which copy.
func (o *jsonObject) member(p jsonPath) gjson.Result { return o.members[p.i] }

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
// is no id. The id owns its text.
func idOf(r gjson.Result) flexID {
	switch r.Type {
	case gjson.Number:
		return flexID(strings.Clone(r.Raw))
	case gjson.String:
		return flexID(ownedString(r.Str))
	}
	return ""
}

// stringOf reads a member declared a string: absent or null is "", and ok
// is false for any other type. The string owns its text.
func stringOf(r gjson.Result) (s string, ok bool) {
	switch r.Type {
	case gjson.String:
		return ownedString(r.Str), true
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

// ownedString is s made valid UTF-8, in memory of its own (s may alias the
// request body).
func ownedString(s string) string {
	if utf8.ValidString(s) {
		return strings.Clone(s)
	}
	return validUTF8(s)
}

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
