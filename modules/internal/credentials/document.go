package credentials

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
)

// document is a token-bearing JSON object: sentry_integration.metadata or
// sentry_identity.data. Unknown keys are kept as they are on write-back.
type document map[string]json.RawMessage

func parseDocument(raw json.RawMessage) document {
	d := document{}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &d)
	}
	if d == nil {
		d = document{}
	}
	return d
}

func (d document) str(key string) string {
	var s string
	if json.Unmarshal(d[key], &s) != nil {
		return ""
	}
	return s
}

// expiry reads a timestamp the way Sentry writes them: a number of Unix
// seconds (MS Teams expires_at, identity expires) or an ISO 8601 string,
// naive meaning UTC (GitHub expires_at).
func (d document) expiry(key string) (time.Time, bool) {
	raw, ok := d[key]
	if !ok {
		return time.Time{}, false
	}
	var n float64
	if json.Unmarshal(raw, &n) == nil {
		return unixSeconds(n)
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return time.Time{}, false
	}
	return parseTimestamp(s)
}

func unixSeconds(n float64) (time.Time, bool) {
	if math.IsNaN(n) || math.IsInf(n, 0) || n <= 0 || n > 1e11 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(n)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}

var isoLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
}

func parseTimestamp(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return unixSeconds(n)
	}
	for _, layout := range isoLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// merge returns cur with the keys of set replaced, other keys kept.
func merge(cur json.RawMessage, set map[string]any) (json.RawMessage, error) {
	d := parseDocument(cur)
	for k, v := range set {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		d[k] = b
	}
	return json.Marshal(d)
}

// naiveUTC formats t as Sentry stores GitHub's expires_at: ISO 8601 in
// UTC without a zone.
func naiveUTC(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05") }
