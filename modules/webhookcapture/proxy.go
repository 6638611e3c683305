package webhookcapture

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
)

// syncTimeout is Sentry's budget for a synchronous region answer (§3.2).
const syncTimeout = 20 * time.Second

// maxSyncResponse bounds a buffered region answer.
const maxSyncResponse = 10 << 20

// sharedTransport serves every synchronous region call of every handler
// and config, so connections survive reloads.
var sharedTransport = &http.Transport{
	Proxy:                 nil,
	DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	MaxIdleConnsPerHost:   64,
	IdleConnTimeout:       90 * time.Second,
	ResponseHeaderTimeout: syncTimeout,
	ForceAttemptHTTP2:     true,
}

var syncClient = &http.Client{
	Transport: sharedTransport,
	Timeout:   syncTimeout,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// hopHeaders are not forwarded either way (RFC 9110 §7.6.1), nor are the
// length and host, which the transport sets.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Host", "X-Forwarded-Proto",
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
	for _, k := range hopHeaders {
		out.header.Del(k)
	}
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
	target := *base
	target.Path, target.RawPath = joinPath(base, &o.url)
	target.RawQuery = o.url.RawQuery
	a.url = (&url.URL{Scheme: target.Scheme, Host: target.Host, Path: target.Path, RawPath: target.RawPath}).String()
	req, err := http.NewRequestWithContext(ctx, o.method, target.String(), bytes.NewReader(o.body))
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
	for _, k := range hopHeaders {
		h.Del(k)
	}
	h.Set("X-Sentry-Proxy-URL", a.url)
	h.Set("Content-Length", strconv.Itoa(len(a.body)))
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// joinPath appends the request path to the region address's base path.
func joinPath(base, req *url.URL) (path, rawPath string) {
	bp := base.Path
	if len(bp) > 0 && bp[len(bp)-1] == '/' {
		bp = bp[:len(bp)-1]
	}
	path = bp + req.Path
	if req.RawPath != "" {
		rawPath = base.EscapedPath()
		if len(rawPath) > 0 && rawPath[len(rawPath)-1] == '/' {
			rawPath = rawPath[:len(rawPath)-1]
		}
		rawPath += req.RawPath
	}
	return path, rawPath
}
