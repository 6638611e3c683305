// Package routes decides where the API gateway sends a request: which rule
// of the ordered route table (§1.8) a path matches, and the routing key it
// names (an organization, a region, a Sentry App ...). It knows nothing of
// Caddy, the directory or HTTP; the gateway resolves the key.
//
// The table is compiled once into a segment trie, so a lookup walks the
// path once, allocates nothing and costs the same whatever the table size.
package routes

import (
	"fmt"
	"strings"
)

// Kind is what a matched row asks the gateway to do.
type Kind uint8

// Kinds of rows. Next is the zero value: no row matched.
const (
	// Next: no row matched; the next handler (control) serves it.
	Next Kind = iota
	// Control: a control carve-out; the next handler serves it.
	Control
	// Organization: Key is an organization slug, or id when all digits.
	Organization
	// Region: Key is a region name (/api/0/_admin/cells/<name>/).
	Region
	// ErrorPage: the region comes from the dsn query parameter.
	ErrorPage
	// Default: the default region (legacy paths).
	Default
	// SentryAppInstallation: Key is an installation uuid.
	SentryAppInstallation
	// SentryApp: Key is a Sentry App id or slug.
	SentryApp
	// ProjectKey: Key is a project's public key (DSN key).
	ProjectKey
)

var kindNames = [...]string{"next", "control", "organization", "region", "error_page", "default", "sentry_app_installation", "sentry_app", "project_key"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Proxied reports whether a row of this kind goes to a region.
func (k Kind) Proxied() bool { return k >= Organization }

// Route is one row of the table.
type Route struct {
	Pattern string
	Kind    Kind
	// Upload rows use the gateway's upload timeout.
	Upload bool
}

// Match is the outcome of a lookup.
type Match struct {
	Kind Kind
	// Key is the routing key: a substring of the path, never copied.
	Key    string
	Upload bool
	// Row is the index of the matched row in the compiled table, -1 when
	// none matched.
	Row int
}

// segment kinds in a compiled pattern
const (
	segLiteral = iota
	segKey
	segAny
	segDigits
	segRest
)

type node struct {
	// literal children: a short list scanned in order (comparing strings
	// of different lengths costs nothing), or a map once there are many.
	literals []literalChild
	literal  map[string]*node
	key      *node // {key}
	any      *node // *
	digits   *node // #
	end      int32 // row ending here, or -1
	rest     int32 // row whose ** starts here, or -1
	min      int32 // lowest row anywhere below (pruning)
}

type literalChild struct {
	seg  string
	node *node
}

// maxLiteralList is where a node switches from a list to a map.
const maxLiteralList = 8

func newNode() *node { return &node{end: -1, rest: -1, min: noRow} }

func (n *node) child(seg string) *node {
	if n.literal != nil {
		return n.literal[seg]
	}
	for i := range n.literals {
		if n.literals[i].seg == seg {
			return n.literals[i].node
		}
	}
	return nil
}

func (n *node) addChild(seg string) *node {
	if c := n.child(seg); c != nil {
		return c
	}
	c := newNode()
	if n.literal != nil {
		n.literal[seg] = c
		return c
	}
	n.literals = append(n.literals, literalChild{seg, c})
	if len(n.literals) > maxLiteralList {
		n.literal = make(map[string]*node, len(n.literals))
		for _, l := range n.literals {
			n.literal[l.seg] = l.node
		}
		n.literals = nil
	}
	return c
}

const noRow = int32(1<<31 - 1)

// Compiled is a compiled route table. Safe for concurrent use.
type Compiled struct {
	routes []Route
	root   *node
}

// Compile checks and compiles rows, in order: earlier rows win.
func Compile(rows []Route) (*Compiled, error) {
	c := &Compiled{routes: append([]Route(nil), rows...), root: newNode()}
	for i, r := range c.routes {
		if err := c.add(int32(i), r); err != nil {
			return nil, fmt.Errorf("route %q: %w", r.Pattern, err)
		}
	}
	return c, nil
}

// MustCompile is Compile for tables known to be valid.
func MustCompile(rows []Route) *Compiled {
	c, err := Compile(rows)
	if err != nil {
		panic(err)
	}
	return c
}

// Routes returns the compiled rows, in order.
func (c *Compiled) Routes() []Route { return c.routes }

// ParsePattern checks a pattern's syntax (for configuration).
func ParsePattern(p string) error {
	_, err := parsePattern(p)
	return err
}

type seg struct {
	kind int
	lit  string
}

func parsePattern(p string) ([]seg, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("must start with /")
	}
	p = strings.TrimSuffix(p[1:], "/")
	if p == "" {
		return nil, nil
	}
	parts := strings.Split(p, "/")
	out := make([]seg, 0, len(parts))
	keys := 0
	for i, s := range parts {
		switch s {
		case "":
			return nil, fmt.Errorf("empty segment")
		case "{key}":
			keys++
			out = append(out, seg{kind: segKey})
		case "*":
			out = append(out, seg{kind: segAny})
		case "#":
			out = append(out, seg{kind: segDigits})
		case "**":
			if i != len(parts)-1 {
				return nil, fmt.Errorf("** must be the last segment")
			}
			out = append(out, seg{kind: segRest})
		default:
			if strings.ContainsAny(s, "{}*") {
				return nil, fmt.Errorf("segment %q: wildcards must be whole segments", s)
			}
			out = append(out, seg{kind: segLiteral, lit: s})
		}
	}
	if keys > 1 {
		return nil, fmt.Errorf("at most one {key}")
	}
	return out, nil
}

func (c *Compiled) add(row int32, r Route) error {
	segs, err := parsePattern(r.Pattern)
	if err != nil {
		return err
	}
	needKey := r.Kind != Next && r.Kind != Control && r.Kind != ErrorPage && r.Kind != Default
	hasKey := false
	for _, s := range segs {
		hasKey = hasKey || s.kind == segKey
	}
	if needKey != hasKey {
		if needKey {
			return fmt.Errorf("a %s row needs a {key} segment", r.Kind)
		}
		return fmt.Errorf("a %s row takes no {key} segment", r.Kind)
	}
	n := c.root
	for _, s := range segs {
		if row < n.min {
			n.min = row
		}
		switch s.kind {
		case segRest:
			if n.rest < 0 {
				n.rest = row
			}
			return nil
		case segLiteral:
			n = n.addChild(s.lit)
		case segKey:
			if n.key == nil {
				n.key = newNode()
			}
			n = n.key
		case segAny:
			if n.any == nil {
				n.any = newNode()
			}
			n = n.any
		case segDigits:
			if n.digits == nil {
				n.digits = newNode()
			}
			n = n.digits
		}
	}
	if row < n.min {
		n.min = row
	}
	if n.end < 0 {
		n.end = row
	}
	return nil
}

// Lookup matches a request path (the escaped path as sent, "/a/b/").
func (c *Compiled) Lookup(path string) Match {
	m := Match{Row: -1}
	if len(path) == 0 || path[0] != '/' {
		return m
	}
	// One trailing slash is not a segment.
	p := path[1:]
	if len(p) > 0 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	best, key := walk(c.root, p, p == "", noRow, "", "")
	if best == noRow {
		return m
	}
	r := c.routes[best]
	m.Kind, m.Key, m.Upload, m.Row = r.Kind, key, r.Upload, int(best)
	if m.Kind == ProjectKey {
		// "<key>.js", "<key>.min.js"
		if i := strings.IndexByte(m.Key, '.'); i >= 0 {
			m.Key = m.Key[:i]
		}
	}
	return m
}

// walk finds the lowest row below n matching rest (the path after n, no
// leading slash; done means no segments are left). best/bestKey is the
// best match so far; key is the capture on the way down.
func walk(n *node, rest string, done bool, best int32, bestKey, key string) (int32, string) {
	if n.min >= best {
		return best, bestKey
	}
	if n.rest >= 0 && n.rest < best {
		best, bestKey = n.rest, key
	}
	if done {
		if n.end >= 0 && n.end < best {
			best, bestKey = n.end, key
		}
		return best, bestKey
	}
	seg, after, more := strings.Cut(rest, "/")
	last := !more
	if child := n.child(seg); child != nil {
		best, bestKey = walk(child, after, last, best, bestKey, key)
	}
	if seg == "" {
		return best, bestKey
	}
	if n.key != nil {
		best, bestKey = walk(n.key, after, last, best, bestKey, seg)
	}
	if n.any != nil {
		best, bestKey = walk(n.any, after, last, best, bestKey, key)
	}
	if n.digits != nil && allDigits(seg) {
		best, bestKey = walk(n.digits, after, last, best, bestKey, key)
	}
	return best, bestKey
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}
