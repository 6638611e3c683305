package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
)

// Bounds of one forwarded call.
const (
	// forwardTimeout covers the slowest admin call the page makes: a bulk
	// action starts no new batch after 20s and a batch is one statement
	// bounded by the API's 30s store timeout (docs/admin-api.md).
	forwardTimeout = 60 * time.Second
	// maxActionBody is twice the largest body the admin API accepts (the
	// pause routes' 4 KiB), so the API, not the console, says what is wrong
	// with a body of that size.
	maxActionBody = 8 << 10
	// maxAnswer bounds a relayed answer: the largest page (1000 rows of a
	// listing) is a few MiB.
	maxAnswer = 64 << 20
)

// adminClient calls Caddy's admin endpoint, over TCP or a unix socket.
type adminClient struct {
	client *http.Client
	// host is the Host header and URL authority of every call: the admin
	// endpoint checks it against its allowed origins (DNS rebinding).
	host string
	// where names the endpoint in errors.
	where string
}

func newAdminClient(network, address string) *adminClient {
	if network == "" {
		network = "tcp"
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: httpx.KeepAlive}
	host := address
	if strings.HasPrefix(network, "unix") {
		// Caddy checks no Host on a socket; the URL still needs one.
		host = "localhost"
	}
	return &adminClient{
		client: &http.Client{
			Transport: httpx.NewTransport(httpx.TransportOptions{
				// Every call goes to this one address, whatever the URL says.
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return d.DialContext(ctx, network, address)
				},
				MaxIdleConns:        4,
				MaxIdleConnsPerHost: 4,
			}),
			Timeout:       forwardTimeout,
			CheckRedirect: httpx.NoRedirects,
		},
		host:  host,
		where: network + " " + address,
	}
}

func (a *adminClient) close() { a.client.CloseIdleConnections() }

// forward sends the page's call for the admin route rest (the escaped path
// after /sentry_silo/) to the admin endpoint and relays the answer. Reads
// go as they are. Actions (POST, DELETE) must come from this console's
// own page, and go with the browser's Origin, so that the admin endpoint's
// origin check decides (docs/dashboard.md). Nothing else of the browser's
// request is passed on: no cookie, no credential, no other header.
func (c *Console) forward(w http.ResponseWriter, r *http.Request, rest string) {
	if err := checkRoute(rest); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+c.admin.host+apiMarker+rest, nil)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad admin route: "+err.Error())
		return
	}
	out.URL.RawQuery = r.URL.RawQuery
	out.Header.Set("Accept", "application/json")
	out.Header.Set("User-Agent", "caddy-silo-console")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost, http.MethodDelete:
		if c.readOnly {
			writeError(w, http.StatusForbidden, "this console is read-only (read_only): act through the admin API or the caddy silo command")
			return
		}
		if err := checkSameOrigin(r); err != nil {
			writeError(w, http.StatusForbidden, err.Error())
			return
		}
		out.Header.Set("Origin", r.Header.Get("Origin"))
		body, status, err := readActionBody(r)
		if err != nil {
			writeError(w, status, err.Error())
			return
		}
		if isPause(rest) {
			body = stampPauser(body, c.user(r))
		}
		if len(body) > 0 {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.ContentLength = int64(len(body))
			out.Header.Set("Content-Type", "application/json")
		}
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "the admin API takes GET, HEAD, POST and DELETE")
		return
	}
	resp, err := c.admin.client.Do(out)
	if err != nil {
		if errors.Is(r.Context().Err(), context.Canceled) {
			return // the browser went away
		}
		writeError(w, http.StatusBadGateway, fmt.Sprintf("the admin endpoint (%s) cannot be reached: %v", c.admin.where, unwrapURLError(err)))
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Allow"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, maxAnswer))
}

// checkRoute refuses a route that could leave /sentry_silo/ once the admin
// endpoint decodes and cleans it (dot segments, encoded or doubled
// slashes, backslashes): the console must never reach /load, /config or
// /stop.
func checkRoute(rest string) error {
	lower := strings.ToLower("/" + rest)
	for _, bad := range []string{"%2f", "%5c", "%2e", "\\", "//"} {
		if strings.Contains(lower, bad) {
			return fmt.Errorf("admin route %q: %q is not allowed in a console route", rest, bad)
		}
	}
	for _, seg := range strings.Split(rest, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("admin route %q: dot segments are not allowed", rest)
		}
	}
	return nil
}

// checkSameOrigin accepts an action only from a page of this console's
// own origin. A browser sends Origin with every POST and DELETE; a
// cross-site form or script sends its own (or "null"), and a request
// without one is not from a browser page at all.
func checkSameOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return errors.New("an action needs the Origin header a browser sends: use the console's page, or the admin API directly")
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("action refused: Origin %q is not an origin", origin)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if !strings.EqualFold(u.Scheme, scheme) || !strings.EqualFold(u.Host, r.Host) {
		return fmt.Errorf("action refused: it comes from %s, not from this console (%s://%s)", origin, scheme, r.Host)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return fmt.Errorf("action refused: the browser says it is %s, not same-origin", site)
	}
	return nil
}

// readActionBody reads the body of the action r: at most maxActionBody
// bytes of JSON, or nothing.
func readActionBody(r *http.Request) ([]byte, int, error) {
	if r.Body == nil {
		return nil, 0, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxActionBody+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("reading the request body: %v", err)
	}
	if len(b) == 0 {
		return nil, 0, nil
	}
	if len(b) > maxActionBody {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("an action's body is at most %d bytes", maxActionBody)
	}
	// JSON only: a cross-site form cannot send it without a preflight,
	// which this console never answers.
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, http.StatusUnsupportedMediaType, errors.New("an action's body must be application/json")
	}
	return b, 0, nil
}

// isPause reports whether the admin route rest pauses a region or a
// mailbox (regions/<name>/pause, mailboxes/<name>/pause).
func isPause(rest string) bool {
	parts := strings.Split(rest, "/")
	return len(parts) == 3 && (parts[0] == "regions" || parts[0] == "mailboxes") && parts[2] == "pause"
}

// maxPauser bounds the user name put in a pause's "by", well inside the
// admin API's 200 characters.
const maxPauser = 150

// stampPauser sets the "by" of a pause's JSON body to who paused: the
// dashboard, and the user the site's authentication named, if any. The
// page cannot claim another name. A body that is not a JSON object is
// left as it is, for the admin API to refuse with its own message.
func stampPauser(body []byte, user string) []byte {
	fields := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &fields); err != nil {
			return body
		}
	}
	by := "dashboard"
	if user != "" {
		if r := []rune(user); len(r) > maxPauser {
			user = string(r[:maxPauser])
		}
		by += " (" + user + ")"
	}
	fields["by"], _ = json.Marshal(by)
	out, err := json.Marshal(fields)
	if err != nil {
		return body
	}
	return out
}

// unwrapURLError drops the *url.Error wrapper, whose text repeats the
// method and URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
