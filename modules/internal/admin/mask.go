package admin

import (
	"encoding/base64"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Masked replaces every credential and signature in an answer.
const Masked = "[masked]"

// PreviewBytes bounds a body preview.
const PreviewBytes = 4096

// maskedHeaders carry a credential or a signature whatever their value;
// any header whose name holds one of secretWords does too.
var maskedHeaders = map[string]bool{
	"authorization":       true,
	"proxy-authorization": true,
	"cookie":              true,
	"set-cookie":          true,
	"x-hub-signature":     true,
	"x-hub-signature-256": true,
	"x-slack-signature":   true,
	"x-signature-ed25519": true,
	"x-gitlab-token":      true,
	"x-sentry-auth":       true,
	"shared-secret":       true,
}

// secretWords in a header's name mark it as a credential.
var secretWords = []string{"token", "secret", "signature", "auth", "password", "cookie", "session", "credential", "api-key", "apikey"}

// sensitiveHeader reports whether a header's values are masked.
func sensitiveHeader(name string) bool {
	n := strings.ToLower(name)
	if maskedHeaders[n] || strings.HasPrefix(n, "x-sentry-subnet-") {
		return true
	}
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// maskHeaders copies the stored headers, each value of a sensitive one
// masked.
func maskHeaders(h http.Header) map[string][]string {
	out := make(map[string][]string, len(h))
	for name, vs := range h {
		if !sensitiveHeader(name) {
			out[name] = append([]string{}, vs...)
			continue
		}
		m := make([]string, len(vs))
		for i := range m {
			m[i] = Masked
		}
		out[name] = m
	}
	return out
}

// secretParam reports whether a query parameter's value is masked: jwt
// (Jira Connect's token) and any name holding one of these words.
func secretParam(name string) bool {
	n := strings.ToLower(name)
	if n == "jwt" {
		return true
	}
	for _, w := range []string{"token", "secret", "signature", "auth", "password", "key"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// jiraServerHook is where Jira Server's path carries its token (a JWT
// signed with the integration's secret).
const jiraServerHook = "/jira-server/issue-updated/"

// maskPath masks the credentials a stored path (path plus "?query") can
// carry: Jira Server's token segment, any segment that is a JWT, and the
// values of secret query parameters. The rest stays byte for byte.
func maskPath(p string) string {
	path, query, hasQuery := strings.Cut(p, "?")
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if looksLikeJWT(s) {
			segs[i] = Masked
		}
	}
	path = strings.Join(segs, "/")
	if i := strings.Index(path, jiraServerHook); i >= 0 {
		rest := path[i+len(jiraServerHook):]
		if token, tail, slash := strings.Cut(rest, "/"); token != "" && token != Masked {
			path = path[:i+len(jiraServerHook)] + Masked
			if slash {
				path += "/" + tail
			}
		}
	}
	if !hasQuery {
		return path
	}
	pairs := strings.Split(query, "&")
	for i, pair := range pairs {
		name, _, _ := strings.Cut(pair, "=")
		if un, err := url.QueryUnescape(name); err == nil {
			name = un
		}
		if secretParam(name) {
			pairs[i] = pair[:strings.IndexByte(pair+"=", '=')] + "=" + Masked
		}
	}
	return path + "?" + strings.Join(pairs, "&")
}

// looksLikeJWT reports a path segment that is a JWT (its header is a JSON
// object, so its base64 starts with "eyJ", and it has three parts).
func looksLikeJWT(s string) bool {
	return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2
}

// maskCallbackURL keeps a response_url's scheme and host: whoever holds
// the whole URL may post to the conversation.
func maskCallbackURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return Masked
	}
	return u.Scheme + "://" + u.Host + "/" + Masked
}

// secretFields are body members whose values are credentials: Slack's
// verification token and response_url, Discord's interaction token, OAuth
// tokens and secrets.
const secretFields = `token|response_url|access_token|refresh_token|client_secret|password|secret`

// jsonSecret finds a secret member's string value in JSON text.
var jsonSecret = regexp.MustCompile(`(?i)("(?:` + secretFields + `)"\s*:\s*)"(?:[^"\\]|\\.)*"`)

// formSecret reports a secret form field.
var formSecret = regexp.MustCompile(`(?i)^(?:` + secretFields + `)$`)

// maskBody masks the secret fields of a JSON or form-encoded body (in a
// form, Slack's payload field is JSON too). It reports whether it masked
// anything. Other bodies are returned as they are.
func maskBody(body []byte, contentType string) ([]byte, bool) {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/x-www-form-urlencoded" {
		return maskForm(body)
	}
	return maskJSON(body)
}

func maskJSON(body []byte) ([]byte, bool) {
	if !jsonSecret.Match(body) {
		return body, false
	}
	return jsonSecret.ReplaceAll(body, []byte(`${1}"`+Masked+`"`)), true
}

func maskForm(body []byte) ([]byte, bool) {
	pairs := strings.Split(string(body), "&")
	changed := false
	for i, pair := range pairs {
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			continue
		}
		switch {
		case formSecret.MatchString(name):
			pairs[i] = rawName + "=" + url.QueryEscape(Masked)
			changed = true
		case name == "payload":
			v, err := url.QueryUnescape(rawValue)
			if err != nil {
				continue
			}
			if m, ok := maskJSON([]byte(v)); ok {
				pairs[i] = rawName + "=" + url.QueryEscape(string(m))
				changed = true
			}
		}
	}
	if !changed {
		return body, false
	}
	return []byte(strings.Join(pairs, "&")), true
}

// BodyView is a body's bounded preview (docs/admin-api.md, "Body
// preview").
type BodyView struct {
	Size      int    `json:"size"`
	Encoding  string `json:"encoding"` // "text" or "base64"
	Preview   string `json:"preview"`
	Truncated bool   `json:"truncated"`
	Masked    bool   `json:"masked"`
}

// bodyView masks a stored body and previews its first PreviewBytes: as
// text when those bytes are UTF-8 (cut on a character boundary), else as
// base64.
func bodyView(body []byte, contentType string) BodyView {
	v := BodyView{Size: len(body)}
	shown, masked := maskBody(body, contentType)
	v.Masked = masked
	cut := shown
	if len(cut) > PreviewBytes {
		cut = cut[:PreviewBytes]
		v.Truncated = true
	}
	text := cut
	// A character cut in two at the bound is left out, up to its 3
	// leading bytes.
	for k := 0; k < 3 && len(text) > 0 && v.Truncated && !utf8.Valid(text); k++ {
		text = text[:len(text)-1]
	}
	if utf8.Valid(text) {
		v.Encoding, v.Preview = "text", string(text)
		return v
	}
	v.Encoding, v.Preview = "base64", base64.StdEncoding.EncodeToString(cut)
	return v
}
