package credproxy

import (
	"errors"
	"net/url"
	"strings"
)

// target is where a proxied call goes: Base-URL joined with Path, the
// query kept.
type target struct {
	base *url.URL // Base-URL, trailing "/" trimmed from its path
	url  *url.URL // the full outbound URL
}

var (
	errBadBase = errors.New("base url is not an absolute http(s) URL")
	errBadPath = errors.New("path has a scheme, an authority or leaves the base path")
)

// buildTarget joins X-Sentry-Subnet-Base-URL and X-Sentry-Subnet-Path as
// Sentry does (urljoin(base.rstrip("/") + "/", path)), but refuses every
// Path that could move the call off the base: a scheme, an authority, a
// leading "//", a backslash, control characters, or ".." segments
// (plain or percent-encoded) that climb above the base path.
func buildTarget(baseRaw, pathRaw string) (target, error) {
	base, err := url.Parse(strings.TrimRight(baseRaw, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" ||
		base.User != nil || base.RawQuery != "" || base.ForceQuery || base.Fragment != "" || base.Opaque != "" ||
		base.Hostname() == "" {
		return target{}, errBadBase
	}
	if strings.HasPrefix(pathRaw, "//") || strings.ContainsAny(pathRaw, "\\#") || hasControl(pathRaw) {
		return target{}, errBadPath
	}
	path := strings.TrimLeft(pathRaw, "/")
	ref, err := url.Parse(path)
	if err != nil || ref.Scheme != "" || ref.Host != "" || ref.User != nil || ref.Opaque != "" {
		return target{}, errBadPath
	}
	if climbs(ref.EscapedPath()) {
		return target{}, errBadPath
	}
	out := *base
	out.Path = base.Path + "/" + ref.Path
	if base.RawPath != "" || ref.RawPath != "" {
		out.RawPath = base.EscapedPath() + "/" + ref.EscapedPath()
	}
	out.RawQuery = ref.RawQuery
	out.ForceQuery = ref.ForceQuery
	return target{base: base, url: &out}, nil
}

// climbs reports whether a relative path's dot segments go above its
// start. Segments are unescaped first, since many servers decode %2e and
// %2f, and a decoded separator splits a segment in more.
func climbs(escaped string) bool {
	depth := 0
	for _, seg := range strings.Split(escaped, "/") {
		if s, err := url.PathUnescape(seg); err == nil {
			seg = s
		}
		for _, piece := range strings.FieldsFunc(seg, func(r rune) bool { return r == '/' || r == '\\' }) {
			switch piece {
			case "..":
				depth--
				if depth < 0 {
					return true
				}
			case ".":
			default:
				depth++
			}
		}
	}
	return false
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
