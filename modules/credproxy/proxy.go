package credproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/credentials"
	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
	"github.com/sentrysilo/caddy-silo/modules/internal/rejection"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

// Lookups finds the organization integration and its integration of a
// call: the directory (cached for directory_cache, single-flighted). The
// tokens themselves are never taken from it: credentials reads them from
// the store.
type Lookups interface {
	OrganizationIntegration(ctx context.Context, id int64) (directory.OrganizationIntegration, error)
	IntegrationByID(ctx context.Context, id int64) (directory.Integration, error)
}

// DefaultMaxBodySize bounds the request body, which is buffered for the
// signature check and for the replay after a 401.
const DefaultMaxBodySize = 16 << 20

// proxy is the credential proxy without Caddy: validation, credentials,
// forwarding.
type proxy struct {
	secret         func() string
	lookups        func() Lookups
	creds          *credentials.Manager
	client         *http.Client
	allow          allowList
	connectTimeout time.Duration
	readTimeout    time.Duration
	maxBodySize    int64
	logger         *zap.Logger
	rejections     *rejection.Log // counted by reason, logged at info
	metrics        *metrics
}

// rejection reasons, named after Sentry's failure_type where one exists.
const (
	reasonNoSecret       = "no_subnet_secret"
	reasonSenderHeaders  = "invalid_sender_headers"
	reasonSignature      = "invalid_sender_signature"
	reasonOIHeader       = "invalid_org_integration_headers"
	reasonOI             = "invalid_org_integration"
	reasonIntegration    = "invalid_integration"
	reasonClient         = "invalid_client"
	reasonTarget         = "invalid_target"
	reasonHost           = "host_not_allowed"
	reasonCredentials    = "invalid_credentials"
	reasonBodyUnreadable = "unreadable_body"
)

func (p *proxy) serve(w http.ResponseWriter, r *http.Request) {
	provider := ""
	reject := func(reason string) {
		p.fail(w, http.StatusBadRequest, provider, "rejected")
		p.rejections.Reject(providerLabel(provider), reason, orgIntegrationField(r))
	}
	call, reason, err := p.verify(w, r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			p.fail(w, http.StatusRequestEntityTooLarge, provider, "too_large")
			return
		}
	}
	if reason != "" {
		reject(reason)
		return
	}
	st := p.lookups()
	if st == nil {
		p.fail(w, http.StatusServiceUnavailable, provider, "store_unavailable")
		return
	}
	ct, reason, err := integrationOf(r.Context(), st, call.oiID)
	provider = ct.Integration.Provider
	switch {
	case err != nil:
		p.storeError(w, err)
		return
	case reason != "":
		reject(reason)
		return
	}
	// The host of Base-URL belongs to this integration.
	if !p.allow.allows(call.tgt.base.Hostname(), httpx.Port(call.tgt.base)) && !credentials.OwnsHost(provider, ct.Integration.Metadata, call.tgt.base) {
		reject(reasonHost)
		return
	}
	ct.BaseURL = call.tgt.base.String()
	p.forward(w, r, call.body, call.tgt, ct)
}

// orgIntegrationField names the request's organization integration in a
// rejection's log line: the header is the sender's, so only a decimal id
// is written as it is.
func orgIntegrationField(r *http.Request) zap.Field {
	v := r.Header.Get(subnet.HeaderOrganizationIntegration)
	if _, ok := parseDecimal(v); !ok {
		v = "(not a decimal id)"
	}
	return zap.String("org_integration", v)
}

// signedCall is a proxy request whose signature checked out.
type signedCall struct {
	body []byte
	oiID int64
	tgt  target
}

// verify runs Sentry's checks that need no database (§2.4 steps 1 to 3),
// in its order: a secret to verify with (the mode was checked by the
// caller), the sender headers, the signature over the body, a decimal
// organization integration id, and a target that stays under Base-URL
// (not an open proxy). It returns the reason of a rejection, or err for a
// body that could not be read (a *http.MaxBytesError is a 413).
func (p *proxy) verify(w http.ResponseWriter, r *http.Request) (call signedCall, reason string, err error) {
	secret := p.secret()
	if secret == "" {
		return call, reasonNoSecret, nil
	}
	sig := r.Header.Get(subnet.HeaderSignature)
	oiRaw := r.Header.Get(subnet.HeaderOrganizationIntegration)
	baseRaw := r.Header.Get(subnet.HeaderBaseURL)
	pathRaw := r.Header.Get(subnet.HeaderPath)
	if sig == "" || oiRaw == "" || baseRaw == "" {
		return call, reasonSenderHeaders, nil
	}
	if call.body, err = readBody(w, r, p.maxBodySize); err != nil {
		return call, reasonBodyUnreadable, err
	}
	if !subnet.Verify(secret, baseRaw, pathRaw, oiRaw, call.body, sig) {
		return call, reasonSignature, nil
	}
	var ok bool
	if call.oiID, ok = parseDecimal(oiRaw); !ok {
		return call, reasonOIHeader, nil
	}
	if call.tgt, err = buildTarget(baseRaw, pathRaw); err != nil {
		return call, reasonTarget, nil
	}
	return call, "", nil
}

// integrationOf finds the active organization integration and its active
// integration, of a provider the proxy has a client for (§2.4 steps 3 to
// 5). It returns the reason of a rejection, or the directory's error.
func integrationOf(ctx context.Context, st Lookups, oiID int64) (credentials.Target, string, error) {
	var ct credentials.Target
	oi, err := st.OrganizationIntegration(ctx, oiID)
	if errors.Is(err, directory.ErrNotFound) || (err == nil && oi.Status != directory.StatusActive) {
		return ct, reasonOI, nil
	}
	if err != nil {
		return ct, "", err
	}
	ct.OrgIntegration = oi
	integ, err := st.IntegrationByID(ctx, oi.IntegrationID)
	if errors.Is(err, directory.ErrNotFound) || (err == nil && integ.Status != directory.StatusActive) {
		return ct, reasonIntegration, nil
	}
	if err != nil {
		return ct, "", err
	}
	ct.Integration = integ
	if !credentials.Supports(integ.Provider) {
		return ct, reasonClient, nil
	}
	return ct, "", nil
}

// forward sends the call with the integration's credentials, retries once
// after a 401 with a forced refresh, and streams the answer back.
func (p *proxy) forward(w http.ResponseWriter, r *http.Request, body []byte, tgt target, ct credentials.Target) {
	provider := ct.Integration.Provider
	connect, read := p.connectTimeout, p.readTimeout
	if c, rd, ok := subnet.ParseTimeout(r.Header.Get(subnet.HeaderTimeout)); ok {
		connect, read = c, rd
	}
	header := outboundHeaders(r.Header)

	ctx, cancel := context.WithCancelCause(withConnectTimeout(r.Context(), connect))
	defer cancel(nil)

	newRequest := func() *http.Request {
		out := &http.Request{
			Method:        r.Method,
			URL:           tgt.url,
			Proto:         "HTTP/1.1",
			ProtoMajor:    1,
			ProtoMinor:    1,
			Header:        header.Clone(),
			Host:          tgt.url.Host,
			ContentLength: int64(len(body)),
			Body:          http.NoBody,
		}
		if len(body) > 0 {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
		return out.WithContext(ctx)
	}

	// Credentials first: a refresh has its own timeout, so the read
	// timeout starts when the call to the third party does.
	out := newRequest()
	grant, err := p.creds.Authorize(r.Context(), ct, out)
	if err != nil {
		p.credentialError(w, provider, ct, err)
		return
	}
	wd := newWatchdog(connect+read, read, cancel)
	defer wd.stop()
	ctx = httptrace.WithClientTrace(ctx, wd.trace)
	out = out.WithContext(ctx)
	resp, err := p.client.Do(out)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		retry := newRequest().WithContext(ctx)
		wd.stop()
		if _, ok, rerr := p.creds.Reauthorize(r.Context(), ct, retry, grant); rerr != nil {
			drain(resp)
			p.credentialError(w, provider, ct, rerr)
			return
		} else if ok {
			drain(resp)
			wd.reset(connect + read)
			resp, err = p.client.Do(retry)
		} else {
			wd.reset(read)
		}
	}
	if err != nil {
		p.transportError(w, r, provider, ct, err, context.Cause(ctx))
		return
	}
	defer resp.Body.Close()
	wd.reset(read)

	h := w.Header()
	copyResponseHeaders(h, resp.Header)
	h.Set(subnet.HeaderInternalProxyFailure, "false")
	w.WriteHeader(resp.StatusCode)
	p.metrics.request(provider, "forwarded")
	if err := p.stream(w, resp, wd); err != nil {
		// The status is sent: all that is left is to cut the response
		// short so the caller sees it incomplete.
		if c := p.logger.Check(zap.DebugLevel, "third-party response cut short"); c != nil {
			c.Write(zap.String("provider", provider), zap.Int64("integration_id", ct.Integration.ID), zap.Error(scrubURL(err)))
		}
		panic(http.ErrAbortHandler)
	}
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// stream copies the body, flushing each chunk when the length is unknown
// (event streams, long polls), and restarts the read timeout on each
// chunk.
func (p *proxy) stream(w http.ResponseWriter, resp *http.Response, wd *watchdog) error {
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	buf := *bufp
	flush := resp.ContentLength < 0
	rc := http.NewResponseController(w)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			wd.reset(wd.read)
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flush {
				_ = rc.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// fail answers a failure of the proxy itself: an empty body and
// X-Sentry-Internal-Proxy-Failure: true.
func (p *proxy) fail(w http.ResponseWriter, status int, provider, outcome string) {
	h := w.Header()
	h.Set(subnet.HeaderInternalProxyFailure, "true")
	h.Set("Content-Length", "0")
	w.WriteHeader(status)
	p.metrics.request(provider, outcome)
}

func (p *proxy) storeError(w http.ResponseWriter, err error) {
	p.logger.Error("integration proxy: directory lookup failed", zap.Error(err))
	p.fail(w, http.StatusServiceUnavailable, "", "store_unavailable")
}

// credentialError maps a credentials failure: credentials that cannot be
// had or were refused get 400 (Sentry's IdentityNotValid), a token
// endpoint that failed otherwise 502.
func (p *proxy) credentialError(w http.ResponseWriter, provider string, ct credentials.Target, err error) {
	fields := []zap.Field{zap.String("provider", provider), zap.Int64("integration_id", ct.Integration.ID),
		zap.Int64("org_integration_id", ct.OrgIntegration.ID), zap.Error(err)}
	switch {
	case errors.Is(err, credentials.ErrInvalid), errors.Is(err, credentials.ErrUnsupported):
		p.logger.Warn("integration proxy: no valid credentials", fields...)
		p.fail(w, http.StatusBadRequest, provider, "credentials_invalid")
	case errors.Is(err, context.Canceled):
		p.fail(w, 499, provider, "canceled")
	case errors.Is(err, store.ErrUnavailable):
		p.logger.Error("integration proxy: token store unavailable", fields...)
		p.fail(w, http.StatusServiceUnavailable, provider, "store_unavailable")
	default:
		p.logger.Error("integration proxy: token refresh failed", fields...)
		p.fail(w, http.StatusBadGateway, provider, "refresh_failed")
	}
}

// transportError maps a failed call like Sentry's client: not connected
// 503, timed out once connected 504, client gone 499, anything else 502.
func (p *proxy) transportError(w http.ResponseWriter, r *http.Request, provider string, ct credentials.Target, err, cause error) {
	status, outcome := http.StatusBadGateway, "error"
	var de *dialError
	var ne net.Error
	switch {
	case errors.Is(cause, errReadTimeout):
		status, outcome = http.StatusGatewayTimeout, "timeout"
	case r.Context().Err() != nil:
		status, outcome = 499, "canceled"
	case errors.As(err, &de):
		status, outcome = http.StatusServiceUnavailable, "unreachable"
	case errors.As(err, &ne) && ne.Timeout():
		status, outcome = http.StatusGatewayTimeout, "timeout"
	}
	if status != 499 {
		p.logger.Warn("integration proxy: third party call failed",
			zap.String("provider", provider), zap.Int64("integration_id", ct.Integration.ID),
			zap.String("host", ct.BaseURL), zap.Int("status", status), zap.Error(scrubURL(err)))
	}
	p.fail(w, status, provider, outcome)
}

// scrubURL drops the URL from a client error: its query may carry data
// the caller considers private.
func scrubURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > max {
		return nil, &http.MaxBytesError{Limit: max}
	}
	rd := http.MaxBytesReader(w, r.Body, max)
	if r.ContentLength > 0 {
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, err
		}
		// A body longer than announced is an error of its own.
		if n, _ := rd.Read(make([]byte, 1)); n > 0 {
			return nil, errors.New("body longer than Content-Length")
		}
		return buf, nil
	}
	return io.ReadAll(rd)
}

// parseDecimal accepts what Python's str.isdecimal() accepts among ASCII:
// digits only, no sign, fitting an int64.
func parseDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
