package drain

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// resultKind is what a delivery attempt means for its row.
type resultKind int

const (
	// delivered: 2xx/3xx, the row is deleted.
	delivered resultKind = iota
	// dropped: 400/401/403/404/409, the row goes to the dead letters
	// as dropped_<status> and is never retried.
	dropped
	// retry: any other status, or an error; retried with backoff.
	retry
	// aborted: the drainer stopped or lost its lease mid-request; nothing
	// is recorded and the row is delivered again later.
	aborted
	// refusedKind: the address guard refused the response_url at dial
	// time; the row goes to the dead letters as callback_refused.
	refusedKind
)

// result is the outcome of one attempt.
type result struct {
	kind   resultKind
	status int    // HTTP status, 0 when there was no answer
	err    string // why it failed; never holds a URL, header or body
	// unreachable marks failures that count for the region breaker:
	// connection errors, resets, timeouts and 502/503/504.
	unreachable bool
	retryAfter  time.Duration
	// unreadable is set when the region answered a callback payload 2xx
	// but its answer could not be read whole (err says why): the region
	// acted, so it must not be called again, and there is no answer to
	// POST.
	unreadable bool
}

// maxRegionBody bounds what is read of a region's answer to a callback
// payload (it is POSTed on to the response_url); other answers are read
// up to discardBody so the connection can be reused, then dropped.
const (
	maxRegionBody = 1 << 20
	discardBody   = 64 << 10
)

// replayDrops are dropped from every replayed request besides the
// hop-by-hop headers (§4.6 clean_proxy_headers): Host, Content-Length and
// X-Forwarded-Proto belong to the original connection, and Expect to its
// handshake. Content-Encoding is kept: the body is replayed byte for byte
// as it was received, so the header still describes it (dropping it would
// leave a compressed body the region cannot read).
var replayDrops = []string{"Expect", "Host", "Content-Length", "X-Forwarded-Proto"}

// replayHeaders returns a copy of the stored headers without the
// hop-by-hop headers and replayDrops.
func replayHeaders(stored http.Header) http.Header {
	h := make(http.Header, len(stored))
	for k, vs := range stored {
		h[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	httpx.RemoveHopByHop(h)
	for _, name := range replayDrops {
		h.Del(name)
	}
	return h
}

// sendToRegion replays p to its region. regionBody is the region's answer,
// read only when keepBody is set (callback payloads) and the status is 2xx.
func (d *Drainer) sendToRegion(ctx context.Context, base *url.URL, p *store.Payload, keepBody bool) (res result, regionBody []byte) {
	rctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, p.Method, httpx.JoinURL(base, p.Path), bytes.NewReader(p.Body))
	if err != nil {
		return result{kind: retry, err: "stored request is invalid: " + safeError(err)}, nil
	}
	req.Header = replayHeaders(p.Headers)
	if keepBody {
		// Let the transport negotiate and decode compression: the
		// answer is read, not passed through.
		req.Header.Del("Accept-Encoding")
	}
	if len(p.Body) == 0 {
		req.Body = http.NoBody
		req.GetBody = nil
	}
	resp, err := d.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return result{kind: aborted, err: "stopped"}, nil
		}
		return result{kind: retry, unreachable: true, err: transportError(err, rctx)}, nil
	}
	defer resp.Body.Close()
	res = classify(resp, d.cfg.Now())
	if keepBody && res.kind == delivered && resp.StatusCode < 300 {
		regionBody, err = io.ReadAll(io.LimitReader(resp.Body, maxRegionBody+1))
		if err != nil {
			if ctx.Err() != nil {
				return result{kind: aborted, err: "stopped"}, nil
			}
			res.unreadable, res.err = true, "reading the region's answer: "+transportError(err, rctx)
			return res, nil
		}
		if len(regionBody) > maxRegionBody {
			res.unreadable, res.err = true, "region answer too large for a callback (over 1 MiB)"
			return res, nil
		}
		return res, regionBody
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, discardBody))
	return res, nil
}

// classify maps a region's status to an outcome (docs/sentry_silo.md, delivery outcomes).
func classify(resp *http.Response, now time.Time) result {
	code := resp.StatusCode
	res := result{status: code}
	switch {
	case code >= 200 && code < 400:
		res.kind = delivered
	case code == 400 || code == 401 || code == 403 || code == 404 || code == 409:
		res.kind = dropped
	default:
		res.kind = retry
		res.err = "region answered " + strconv.Itoa(code)
		res.unreachable = code == 502 || code == 503 || code == 504
		if code == 429 || code == 503 {
			res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		}
	}
	return res
}

// transportError describes a failed round trip without the URL (a stored
// path can carry a token, e.g. Jira Server's).
func transportError(err error, rctx context.Context) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(rctx.Err(), context.DeadlineExceeded) {
		return "timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return safeError(err)
}

func safeError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	s := err.Error()
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}
