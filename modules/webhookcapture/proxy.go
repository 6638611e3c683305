package webhookcapture

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
)

// syncTimeout is Sentry's budget for a synchronous region answer (§3.2).
const syncTimeout = 20 * time.Second

// maxSyncResponse bounds a buffered region answer.
const maxSyncResponse = 10 << 20

// sharedTransport serves every synchronous region call of every handler
// and config, so connections survive reloads.
var sharedTransport = httpx.NewTransport(httpx.TransportOptions{
	MaxIdleConnsPerHost:   64,
	ResponseHeaderTimeout: syncTimeout,
})

var syncClient = &http.Client{Transport: sharedTransport, Timeout: syncTimeout, CheckRedirect: httpx.NoRedirects}

// syncDrops are not forwarded either way besides the hop-by-hop headers:
// the length and host, which the transport sets, and X-Forwarded-Proto,
// which belongs to the original connection.
var syncDrops = []string{"Content-Length", "Host", "X-Forwarded-Proto"}

// dropHeaders removes the hop-by-hop headers and syncDrops from h.
func dropHeaders(h http.Header) {
	httpx.RemoveHopByHop(h)
	for _, k := range syncDrops {
		h.Del(k)
	}
}

// regionProxy answers the synchronous interactions (Slack and Discord
// without a response_url) with the region's own answer.
type regionProxy struct {
	address func(region string) (*url.URL, bool)
}

func newRegionProxy(address func(region string) (*url.URL, bool)) *regionProxy {
	return &regionProxy{address: address}
}

type regionAnswer struct {
	region string
	url    string
	status int
	header http.Header
	body   []byte
	err    error
}

// serve proxies to the first region (ProxyFirst) or to all regions in
// parallel (ProxyAll) and writes the answer. It returns the metrics
// outcome.
func (p *regionProxy) serve(w http.ResponseWriter, r *http.Request, res *webhooks.Result, body []byte) string {
	regions := res.Regions
	if res.Action == webhooks.ProxyFirst && len(regions) > 1 {
		regions = regions[:1]
	}
	// Every region gets the request even after one has answered (as
	// Sentry's thread pool does), so the calls are not cancelled when this
	// returns; the timeout still bounds them.
	// The calls may outlive this request, whose body buffer is pooled:
	// they get copies.
	out := outbound{method: r.Method, url: *r.URL, header: r.Header.Clone(), body: bytes.Clone(body)}
	dropHeaders(out.header)
	// The region sees the sender the way a replayed webhook shows it.
	setPeer(out.header, r.Header[forwardedFor], r.RemoteAddr)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), syncTimeout)
	answers := make(chan regionAnswer, len(regions))
	var pending sync.WaitGroup
	for _, name := range regions {
		pending.Add(1)
		go func() {
			defer pending.Done()
			answers <- p.call(ctx, &out, name)
		}()
	}
	go func() { pending.Wait(); cancel() }()
	// The first 2xx wins; failing that, the first HTTP answer; failing
	// that, every region's error.
	var firstHTTP *regionAnswer
	errs := make(map[string]string, len(regions))
	for range regions {
		a := <-answers
		switch {
		case a.err != nil:
			errs[a.region] = a.err.Error()
			continue
		case a.status >= 200 && a.status < 300:
			writeAnswer(w, &a)
			return outcomeProxied
		case firstHTTP == nil:
			firstHTTP = &a
		}
	}
	if firstHTTP != nil {
		writeAnswer(w, firstHTTP)
		return outcomeProxied
	}
	detail, _ := json.Marshal(map[string]any{"error": "webhook", "detail": "no region answered", "regions": errs})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = w.Write(detail)
	return outcomeProxyFailed
}

// outbound is what every region's copy of a synchronous request is
// built from.
type outbound struct {
	method string
	url    url.URL
	header http.Header
	body   []byte
}

func (p *regionProxy) call(ctx context.Context, o *outbound, name string) regionAnswer {
	a := regionAnswer{region: name}
	base, ok := p.address(name)
	if !ok {
		a.err = errors.New("unknown region")
		return a
	}
	a.url = httpx.JoinURL(base, o.url.EscapedPath())
	req, err := http.NewRequestWithContext(ctx, o.method, httpx.JoinURL(base, o.url.RequestURI()), bytes.NewReader(o.body))
	if err != nil {
		a.err = err
		return a
	}
	req.Header = o.header.Clone()
	resp, err := syncClient.Do(req)
	if err != nil {
		a.err = err
		return a
	}
	defer resp.Body.Close()
	a.body, err = io.ReadAll(io.LimitReader(resp.Body, maxSyncResponse))
	if err != nil {
		a.err = err
		return a
	}
	a.status, a.header = resp.StatusCode, resp.Header
	return a
}

func writeAnswer(w http.ResponseWriter, a *regionAnswer) {
	h := w.Header()
	for k, vs := range a.header {
		h[k] = vs
	}
	dropHeaders(h)
	h.Set("X-Sentry-Proxy-URL", a.url)
	h.Set("Content-Length", strconv.Itoa(len(a.body)))
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}
