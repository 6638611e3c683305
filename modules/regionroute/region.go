package regionroute

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
)

// region is everything the gateway keeps per region: two reverse_proxy
// handlers (normal and upload timeouts) with their own connection pools,
// its concurrency cap and breaker (shared through regionStates), and its
// metric series. Regions share none of these, so one region's trouble
// never slows another.
type region struct {
	name string
	// nameValue is name boxed once, for the replacer (no allocation
	// per request).
	nameValue any
	// host is the Host header sent to the region.
	host string
	// base is scheme://host of the gateway address, the prefix of
	// X-Sentry-Proxy-URL.
	base    string
	proxy   caddyhttp.MiddlewareHandler
	upload  caddyhttp.MiddlewareHandler
	limit   *limiter
	breaker *breaker
	m       *series
	// stateKey names the shared limiter and breaker in regionStates;
	// empty when none was acquired.
	stateKey string
}

// Connection settings that are not configurable: apigw's client uses a
// 5s connect timeout; idle connections live 30s.
const (
	dialTimeout = 5 * time.Second
	idleTimeout = 30 * time.Second
)

// proxyConfig is the JSON of a reverse_proxy handler to u:
//   - the time the region has to start answering once the request is
//     sent, the longest stall of an answer's body and of an upload are all
//     timeout, bounded on the region's connections (boundStalls), not by
//     reverse_proxy's read_timeout and write_timeout. Over https the
//     transport's response_header_timeout bounds the answer's head as
//     well: HTTP/2 carries many requests on one connection, whose reads
//     do not tell one stream's wait from another's;
//   - no flush_interval: gatewayWriter streams answers of known length
//     (reverse_proxy flushes those of unknown length and event streams
//     itself). An interval made reverse_proxy start a timer and a latency
//     writer for every response: with 10 ms a small answer cost the
//     gateway 236k instructions, 233k without; -1 cost 40k more than
//     10 ms, as it also flushed the head alone, one more write to the
//     client (callgrind, GOGC=off, 3,000 requests). The request body
//     streams to the region on its own;
//   - trusted_proxies everywhere makes reverse_proxy append the client
//     address to the X-Forwarded-For the client sent, as apigw does,
//     instead of replacing it (the regions decide what to trust).
//
// No header ops: the gateway sets Host and X-Apigateway on the request
// and fixes the response head in gatewayWriter, which is cheaper than
// placeholders.
func proxyConfig(u *url.URL, timeout time.Duration, maxIdle int) (json.RawMessage, error) {
	dial, err := dialAddress(u)
	if err != nil {
		return nil, err
	}
	transport := map[string]any{
		"protocol":     "http",
		"dial_timeout": dialTimeout.String(),
		"keep_alive": map[string]any{
			"idle_timeout":            idleTimeout.String(),
			"max_idle_conns_per_host": maxIdle,
		},
	}
	if u.Scheme == "https" {
		transport["tls"] = map[string]any{}
		transport["response_header_timeout"] = timeout.String()
	}
	cfg := map[string]any{
		"upstreams":       []map[string]string{{"dial": dial}},
		"transport":       transport,
		"trusted_proxies": []string{"0.0.0.0/0", "::/0"},
	}
	return json.Marshal(cfg)
}

func dialAddress(u *url.URL) (string, error) {
	if u == nil || u.Host == "" {
		return "", fmt.Errorf("region address has no host")
	}
	switch u.Scheme {
	case "http", "https":
	default:
		return "", fmt.Errorf("region address %q: scheme must be http or https", u.Redacted())
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// boundStalls bounds every read and write on the connections of h's
// transport by timeout, and the wait for an answer from the request's
// write (httpx.WithStallBound). It replaces reverse_proxy's read_timeout
// and write_timeout, a deadline set before every call, and, over plain
// http (HTTP/1.1: one request per connection at a time), the transport's
// response_header_timeout, a timer per request: a small answer cost the
// gateway 233.1k instructions with those, 228.9k with this (callgrind,
// GOGC=off, 3,000 requests; plain reverse_proxy 216.6k and 216.1k
// beside). The transport is reached after it is provisioned, before any
// request.
func boundStalls(h caddyhttp.MiddlewareHandler, timeout time.Duration) error {
	rp, ok := h.(*reverseproxy.Handler)
	if !ok {
		return fmt.Errorf("reverse_proxy is %T", h)
	}
	ht, ok := rp.Transport.(*reverseproxy.HTTPTransport)
	if !ok || ht.Transport == nil || ht.Transport.DialContext == nil || ht.Transport.DialTLSContext != nil {
		// A TLS dial of Caddy's own would dial around the bound.
		return fmt.Errorf("reverse_proxy's transport (%T) is not the plain HTTP transport the stall bound wraps", rp.Transport)
	}
	ht.Transport.DialContext = httpx.WithStallBound(ht.Transport.DialContext, timeout)
	return nil
}

// newRegion loads the region's two reverse_proxy handlers through ctx, so
// that ctx cleans them up with this config.
func newRegion(ctx caddy.Context, name string, u *url.URL, read, upload time.Duration, maxConcurrency int, failures int, window time.Duration, m *series) (*region, error) {
	load := func(timeout time.Duration) (caddyhttp.MiddlewareHandler, error) {
		raw, err := proxyConfig(u, timeout, maxConcurrency)
		if err != nil {
			return nil, err
		}
		mod, err := ctx.LoadModuleByID("http.handlers.reverse_proxy", raw)
		if err != nil {
			return nil, err
		}
		h, ok := mod.(caddyhttp.MiddlewareHandler)
		if !ok {
			return nil, fmt.Errorf("reverse_proxy is %T, not a handler", mod)
		}
		if err := boundStalls(h, timeout); err != nil {
			return nil, err
		}
		return h, nil
	}
	r := &region{name: name, nameValue: name, host: u.Host, base: u.Scheme + "://" + u.Host, m: m}
	var err error
	if r.proxy, err = load(read); err != nil {
		return nil, fmt.Errorf("region %s: %w", name, err)
	}
	if r.upload, err = load(upload); err != nil {
		return nil, fmt.Errorf("region %s: %w", name, err)
	}
	r.stateKey = stateKey(name, r.base, maxConcurrency, failures, window)
	st, err := acquireState(r.stateKey, maxConcurrency, failures, window)
	if err != nil {
		return nil, err
	}
	r.limit, r.breaker = &st.limit, &st.breaker
	return r, nil
}
