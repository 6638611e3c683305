package routes

import "fmt"

// Overlaps reports whether some path matches both patterns. Patterns that
// do not parse overlap nothing.
func Overlaps(a, b string) bool {
	sa, err1 := parsePattern(a)
	sb, err2 := parsePattern(b)
	return err1 == nil && err2 == nil && overlaps(sa, sb)
}

// Covers reports whether every path that inner matches, outer matches too.
func Covers(outer, inner string) bool {
	so, err1 := parsePattern(outer)
	si, err2 := parsePattern(inner)
	return err1 == nil && err2 == nil && covers(so, si)
}

// Every pattern matches at least one path, so ** (any rest, even none)
// meets whatever follows on the other side.
func overlaps(a, b []seg) bool {
	for {
		switch {
		case len(a) > 0 && a[0].kind == segRest, len(b) > 0 && b[0].kind == segRest:
			return true
		case len(a) == 0 || len(b) == 0:
			return len(a) == len(b)
		case !segsMeet(a[0], b[0]):
			return false
		}
		a, b = a[1:], b[1:]
	}
}

func segsMeet(x, y seg) bool {
	if x.kind == segLiteral && y.kind == segLiteral {
		return x.lit == y.lit
	}
	if x.kind == segLiteral {
		x, y = y, x
	}
	// x is a wildcard; y a wildcard or a literal.
	if x.kind == segDigits {
		return y.kind != segLiteral || allDigits(y.lit)
	}
	return true
}

func covers(outer, inner []seg) bool {
	for {
		switch {
		case len(outer) > 0 && outer[0].kind == segRest:
			return true
		case len(inner) > 0 && inner[0].kind == segRest:
			return false // inner matches longer paths than outer can
		case len(outer) == 0 || len(inner) == 0:
			return len(outer) == len(inner)
		case !segCovers(outer[0], inner[0]):
			return false
		}
		outer, inner = outer[1:], inner[1:]
	}
}

func segCovers(o, i seg) bool {
	switch o.kind {
	case segAny, segKey:
		return true
	case segDigits:
		return i.kind == segDigits || (i.kind == segLiteral && allDigits(i.lit))
	}
	return i.kind == segLiteral && i.lit == o.lit
}

// Unchanged explains why putting a row of kind in front of table would
// change where no path goes, or returns "" when it may change some. Each
// reason is exact (the row really is a no-op), but not every no-op is
// found: a row split across several table rows passes. Only Control and
// Default rows are asked about: those are what control_path and pin_path
// add.
func Unchanged(pattern string, kind Kind, table []Route) string {
	p, err := parsePattern(pattern)
	if err != nil {
		return ""
	}
	same := func(k Kind) bool {
		if kind == Control {
			return !k.Proxied()
		}
		return k == kind
	}
	if kind == Control {
		reached := false
		for _, r := range table {
			if r.Kind.Proxied() && overlaps(p, mustParse(r.Pattern)) {
				reached = true
				break
			}
		}
		if !reached {
			return "it matches no path the gateway sends to a region: those paths go to control already"
		}
	}
	// A row of the same kind that covers the pattern, with nothing of
	// another kind in front of it that the pattern reaches.
	for i, r := range table {
		rs := mustParse(r.Pattern)
		if !overlaps(p, rs) {
			continue
		}
		if !same(r.Kind) {
			return ""
		}
		if covers(rs, p) {
			return fmt.Sprintf("the built-in route %s already sends every path it matches to %s", table[i].Pattern, kindWhere(kind))
		}
	}
	return ""
}

func kindWhere(k Kind) string {
	if k == Control {
		return "control"
	}
	return "the default region"
}

func mustParse(p string) []seg {
	s, err := parsePattern(p)
	if err != nil {
		panic(fmt.Sprintf("routes: bad built-in pattern %q: %v", p, err))
	}
	return s
}
