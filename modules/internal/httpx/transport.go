package httpx

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TransportOptions are what differs between caddy-silo's outbound
// transports (deliveries, callbacks, synchronous region calls, the
// credential proxy). The rest is the same for all: NewTransport.
type TransportOptions struct {
	// DialContext dials; nil means a plain dialer with DialTimeout.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialTimeout bounds a plain dial [5s].
	DialTimeout time.Duration
	// MaxIdleConns and MaxIdleConnsPerHost size the keep-alive pool
	// [100, 16].
	MaxIdleConns, MaxIdleConnsPerHost int
	// ResponseHeaderTimeout bounds the wait for an answer's head [none].
	ResponseHeaderTimeout time.Duration
	// TLSHandshakeTimeout [5s].
	TLSHandshakeTimeout time.Duration
	// TLSClientConfig, nil for Go's defaults.
	TLSClientConfig *tls.Config
	// ExpectContinueTimeout [none: the body goes at once].
	ExpectContinueTimeout time.Duration
	// DisableCompression keeps bodies as they are: no Accept-Encoding
	// added and no transparent gzip (a body that is relayed).
	DisableCompression bool
}

// KeepAlive is the TCP keep-alive probe interval of every dial.
const KeepAlive = 30 * time.Second

// NewTransport builds an outbound transport. It never uses a proxy from
// the environment: the destinations are internal region addresses, or
// third parties whose addresses the dial-time guard checks, and a proxy
// would dial on our behalf past that check. Idle connections live 90 s,
// under the 95 s keep-alive of Sentry's own apigw, and HTTP/2 is used
// where TLS offers it.
func NewTransport(o TransportOptions) *http.Transport {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.DialContext == nil {
		o.DialContext = (&net.Dialer{Timeout: o.DialTimeout, KeepAlive: KeepAlive}).DialContext
	}
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = 100
	}
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = 16
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = 5 * time.Second
	}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           o.DialContext,
		MaxIdleConns:          o.MaxIdleConns,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   o.TLSHandshakeTimeout,
		TLSClientConfig:       o.TLSClientConfig,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		ExpectContinueTimeout: o.ExpectContinueTimeout,
		DisableCompression:    o.DisableCompression,
		ForceAttemptHTTP2:     true,
	}
}

// NoRedirects is a CheckRedirect that hands every redirect back to the
// caller: a proxy passes a 3xx on as it is, and a delivery counts it as
// delivered, as Sentry does (allow_redirects=False).
func NoRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// JoinURL appends requestURI (an escaped path, with its "?query" if any,
// sent verbatim) to a base address such as a region's
// "http://10.0.0.5:8010/prefix": "http://10.0.0.5:8010/prefix" + path.
func JoinURL(base *url.URL, requestURI string) string {
	if !strings.HasPrefix(requestURI, "/") {
		requestURI = "/" + requestURI
	}
	return base.Scheme + "://" + base.Host + strings.TrimSuffix(base.EscapedPath(), "/") + requestURI
}

// Port is the port a URL's request goes to: its own, else its scheme's.
func Port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "http" {
		return "80"
	}
	return "443"
}
