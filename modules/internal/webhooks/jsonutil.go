package webhooks

import (
	"bytes"
	"encoding/json"
	"strconv"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// flexID is an id that providers send as a JSON number or a string.
type flexID string

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

// decodeJSON decodes body into v; a body that is not a JSON object is an
// error.
func decodeJSON(body []byte, v any) error {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return errNotObject
	}
	return json.Unmarshal(b, v)
}

type jsonError string

func (e jsonError) Error() string { return string(e) }

const errNotObject = jsonError("body is not a JSON object")

// mod100 returns a non-negative bucket id in [0,100).
func mod100(n int64) int64 {
	m := n % 100
	if m < 0 {
		m = -m
	}
	return m
}
