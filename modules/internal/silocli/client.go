package silocli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Exit codes of `caddy silo`. Scripts branch on them, so they are part of
// the command's contract (docs/cli.md).
const (
	ExitOK          = 0 // done; for a listing, it may be empty
	ExitAPI         = 1 // the admin API answered an error (4xx, 5xx); its message is printed
	ExitUsage       = 2 // bad command line: unknown command or flag, missing or bad argument
	ExitUnreachable = 3 // the admin API could not be reached (Caddy not running, wrong --address)
)

// Error is a failure with its exit code.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func usageErr(format string, args ...any) error {
	return &Error{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// APIError is an error answer of the admin API: its status and the message
// of its JSON body ({"error": "..."}).
type APIError struct {
	Method, Path string
	Status       int
	Message      string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), e.Message)
}

// client talks to the admin API (see Admin).
type client struct {
	http         *http.Client
	base, origin string
}

// maxAnswer bounds what is read of one answer: a page of 1000 rows with
// long errors is well under 4 MB.
const maxAnswer = 16 << 20

// requestTimeout bounds one API call: a bulk action stops starting batches
// after 20 s (docs/admin-api.md), so a minute is stuck, not busy.
const requestTimeout = time.Minute

// call sends one request and returns the answer's body. A non-2xx answer is
// an *APIError (exit 1); a failure to connect is exit 3.
func (c *client) call(ctx context.Context, method, path string, query url.Values, body any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	uri := path
	if len(query) > 0 {
		uri += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+uri, rd)
	if err != nil {
		return nil, err
	}
	if c.origin != "" {
		req.Header.Set("Origin", c.origin)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &Error{Code: ExitUnreachable, Err: fmt.Errorf("cannot reach the admin API at %s: %v (is Caddy running? set --address, or --config to read it from the config)", c.base, unwrapURLError(err))}
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, &Error{Code: ExitUnreachable, Err: fmt.Errorf("%s %s: reading the answer: %v", method, path, err)}
	}
	if resp.StatusCode >= 300 {
		return nil, &Error{Code: ExitAPI, Err: &APIError{Method: method, Path: path, Status: resp.StatusCode, Message: errorMessage(out)}}
	}
	return out, nil
}

// get is call for GET, decoding the answer into v too.
func (c *client) get(ctx context.Context, path string, query url.Values, v any) ([]byte, error) {
	raw, err := c.call(ctx, http.MethodGet, path, query, nil)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, &Error{Code: ExitAPI, Err: fmt.Errorf("GET %s: the answer is not the documented JSON: %v", path, err)}
	}
	return raw, nil
}

// errorMessage is the message of an error body, or the start of a body that
// is not the documented one (an older binary without the route, a proxy).
func errorMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	if s == "" {
		return "(empty answer)"
	}
	return s
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// segment escapes a mailbox or region name for a path: mailbox names hold
// colons, which the API accepts as they are or escaped.
func segment(s string) string { return url.PathEscape(s) }
