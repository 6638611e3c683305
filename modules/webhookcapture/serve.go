package webhookcapture

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/sentrysilo/caddy-silo/modules/internal/mailbox"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
)

// requestMem is the memory one webhook request recycles: its body and its
// payload rows. It goes back to memPool when nothing reads it any more: at
// the end of ServeHTTP, or, once its rows were handed to the batcher, when
// the batcher releases it. That is later for a client that gave up while
// its rows were being committed: they are written with its own bytes, not
// those of the next request the buffer would have served.
type requestMem struct {
	body bytes.Buffer
	rows []store.NewPayload
}

var memPool = sync.Pool{New: func() any { return &requestMem{rows: make([]store.NewPayload, 0, 4)} }}

// maxPooledBody keeps an unusually large body from pinning its buffer in
// the pool.
const maxPooledBody = 1 << 20

// Release implements mailbox.Releaser.
func (m *requestMem) Release() {
	clear(m.rows) // drop the references to the request's headers
	m.rows = m.rows[:0]
	if m.body.Cap() > maxPooledBody {
		return
	}
	m.body.Reset()
	memPool.Put(m)
}

// ServeHTTP handles webhook paths and passes everything else on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !h.active {
		return next.ServeHTTP(w, r)
	}
	provider, parser, ok := webhooks.Route(r.URL.Path)
	if !ok || parser == nil {
		return next.ServeHTTP(w, r)
	}
	start := time.Now()

	mem := memPool.Get().(*requestMem)
	handedOver := false
	defer func() {
		if !handedOver {
			mem.Release()
		}
	}()
	if err := readBody(w, r, &mem.body, h.MaxBodySize); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.finish(w, provider, outcomeTooLarge, http.StatusRequestEntityTooLarge, start)
			return nil
		}
		// The client went away or sent a broken body.
		h.finish(w, provider, "bad_body", http.StatusBadRequest, start)
		return nil
	}
	body := mem.body.Bytes()

	req := webhooks.Request{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header,
		Body:     body,
	}
	res, err := parser(r.Context(), h.env, &req)
	if err != nil {
		h.logger.Warn("directory lookup failed", zap.String("provider", provider), zap.Error(err))
		h.finish(w, provider, outcomeUnavailable, http.StatusServiceUnavailable, start)
		return nil
	}

	switch res.Action {
	case webhooks.PassOn:
		observe(provider, "control", start)
		reinstallBody(r, body)
		return next.ServeHTTP(w, r)
	case webhooks.Respond:
		h.answer(w, r, provider, &res, start)
		return nil
	case webhooks.Capture, webhooks.Callback:
		// The loading modal is opened before the click is committed, as
		// Sentry does: once committed the drainer may call the region at
		// once (measured: 7 ms before a concurrent views.open had
		// returned), and the region updates that modal by its
		// external_id, which must exist by then.
		h.callSlack(r.Context(), res.SlackCall)()
		// store owns mem from here: the batcher releases it.
		handedOver = true
		h.store(w, r, provider, &res, mem, start)
		return nil
	case webhooks.ProxyFirst, webhooks.ProxyAll:
		outcome := h.proxy.serve(w, r, &res, body)
		observe(provider, outcome, start)
		return nil
	}
	reinstallBody(r, body)
	return next.ServeHTTP(w, r)
}

// answer answers a Respond result: after the Slack call it carries (a
// halt message), with the refusal's reason counted and logged.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, provider string, res *webhooks.Result, start time.Time) {
	if res.Reason != "" {
		// Not the path: a legacy hook path can carry a token.
		h.rejections.Reject(provider, res.Reason, zap.Int("status", res.Status),
			zap.Any("client_ip", caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey)))
	}
	if res.SeerHalt != "" {
		if c := h.logger.Check(zapcore.DebugLevel, "seer event halted: no organization for its user"); c != nil {
			c.Write(zap.String("provider", provider), zap.Int64("integration_id", res.IntegrationID), zap.String("reason", res.SeerHalt))
		}
	}
	h.callSlack(r.Context(), res.SlackCall)()
	writeResult(w, res)
	observe(provider, res.Outcome, start)
}

// store commits one payload per region (or the callback payload), then
// answers. It owns mem and hands it to the batcher, which releases it;
// neither mem nor the body it holds may be used after Submit.
func (h *Handler) store(w http.ResponseWriter, r *http.Request, provider string, res *webhooks.Result, mem *requestMem, start time.Time) {
	handedOver := false
	defer func() {
		if !handedOver {
			mem.Release()
		}
	}()
	if h.shed(res.Provider, res.IntegrationID) {
		w.Header().Set("Retry-After", "60")
		h.finish(w, provider, outcomeShed, http.StatusTooManyRequests, start)
		return
	}
	if h.batcher == nil {
		h.finish(w, provider, outcomeUnavailable, http.StatusServiceUnavailable, start)
		return
	}
	bucket := h.bucket(res)
	path := r.URL.RequestURI()
	body := mem.body.Bytes()
	addPeer(r.Header, r.RemoteAddr)
	headers := r.Header
	for _, region := range res.Regions {
		p := store.NewPayload{
			MailboxName:   mailbox.EventName(res.Provider, region, res.Subject, bucket, res.EventType),
			Provider:      res.Provider,
			Region:        region,
			IntegrationID: res.IntegrationID,
			Method:        r.Method,
			Path:          path,
			Headers:       headers,
			Body:          body,
			DeliveryKey:   res.DeliveryKey,
		}
		if res.Action == webhooks.Callback {
			p.DestinationType = store.DestinationCallback
			p.CallbackURL = res.CallbackURL
		}
		if err := p.Validate(); err != nil {
			h.logger.Error("refusing invalid payload", zap.String("provider", provider), zap.Error(err))
			h.finish(w, provider, outcomeUnavailable, http.StatusServiceUnavailable, start)
			return
		}
		mem.rows = append(mem.rows, p)
	}
	rows := mem.rows
	if len(rows) == 0 {
		h.finish(w, provider, "dropped", http.StatusAccepted, start)
		return
	}

	// The batcher bounds the wait (5 s queued, 5 s committing), so a
	// stuck database answers 503 rather than holding the request.
	handedOver = true
	results, err := h.batcher.Submit(r.Context(), rows, mem)
	if err != nil {
		if c := h.logger.Check(zapcore.WarnLevel, "webhook not stored"); c != nil {
			c.Write(zap.String("provider", provider), zap.Bool("store_unavailable", errors.Is(err, store.ErrUnavailable)), zap.Error(err))
		}
		h.finish(w, provider, outcomeUnavailable, http.StatusServiceUnavailable, start)
		return
	}

	outcome := outcomeCaptured
	if res.Action == webhooks.Callback {
		outcome = outcomeCallback
	} else if allDuplicates(results) {
		outcome = outcomeDuplicate
	}
	if res.Action == webhooks.Callback {
		writeResult(w, res)
	} else {
		w.WriteHeader(http.StatusAccepted)
	}
	observe(provider, outcome, start)
}

// bucket is the bucket of res's mailbox, or -1: by its key always for a
// provider whose mailboxes are always split (GitHub's), else only once the
// integration is past the hourly threshold.
func (h *Handler) bucket(res *webhooks.Result) int64 {
	if !res.AlwaysBucket {
		return h.bucketer.Bucket(res.Provider, res.IntegrationID, res.BucketKey, res.HasBucket)
	}
	if !res.HasBucket {
		return -1
	}
	return mailbox.BucketOf(res.BucketKey)
}

func allDuplicates(rs []store.InsertResult) bool {
	for _, r := range rs {
		if !r.Duplicate {
			return false
		}
	}
	return len(rs) > 0
}

// finish writes an empty answer and records it.
func (h *Handler) finish(w http.ResponseWriter, provider, outcome string, status int, start time.Time) {
	w.WriteHeader(status)
	observe(provider, outcome, start)
}

func observe(provider, outcome string, start time.Time) {
	if outcome == "" {
		outcome = "answered"
	}
	capturedTotal.WithLabelValues(provider, outcome).Inc()
	captureDuration.WithLabelValues(provider, outcome).Observe(time.Since(start).Seconds())
}

func writeResult(w http.ResponseWriter, res *webhooks.Result) {
	if res.ContentType != "" {
		w.Header().Set("Content-Type", res.ContentType)
	}
	if len(res.Body) > 0 {
		w.Header().Set("Content-Length", strconv.Itoa(len(res.Body)))
	}
	w.WriteHeader(res.Status)
	if len(res.Body) > 0 {
		_, _ = w.Write(res.Body)
	}
}

// readBody reads the whole body into buf, refusing more than max bytes.
func readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer, max int64) error {
	if r.ContentLength > max {
		return &http.MaxBytesError{Limit: max}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, max))
	return err
}

// reinstallBody gives the next handler the body this one consumed, with a
// consistent length (reverse_proxy drops bodies with ContentLength 0).
func reinstallBody(r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Del("Transfer-Encoding")
	r.TransferEncoding = nil
	if len(body) > 0 {
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
}

var _ caddyhttp.MiddlewareHandler = (*Handler)(nil)
