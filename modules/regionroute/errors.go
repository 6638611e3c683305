package regionroute

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// outcome is the result of one gateway request, a metrics label.
type outcome uint8

const (
	outcomeOK             outcome = iota // the region answered (not 502-504)
	outcomeUpstreamError                 // the region answered 502, 503 or 504
	outcomeUnavailable                   // connect error: 503
	outcomeTimeout                       // connect or read timeout: 504
	outcomeError                         // other transport error: 502
	outcomeCanceled                      // the client went away
	outcomeBreakerOpen                   // 503 without contacting the region
	outcomeOverloaded                    // 429, max_concurrency reached
	outcomeNotFound                      // 404, unknown organization or region
	outcomeInvalid                       // 400, bad or missing DSN
	outcomeDirectoryError                // 503, the directory could not answer
	outcomeAborted                       // the stream broke after the head went out
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	"ok", "upstream_error", "unavailable", "timeout", "error", "canceled",
	"breaker_open", "overloaded", "not_found", "invalid", "directory_error", "aborted",
}

func (o outcome) String() string { return outcomeNames[o] }

// failure reports whether the outcome counts against the region's breaker:
// connect errors, timeouts, other transport errors (apigw counts those
// too) and 502/503/504 answers.
func (o outcome) failure() bool {
	return o == outcomeUpstreamError || o == outcomeUnavailable || o == outcomeTimeout || o == outcomeError
}

// apigw's error bodies, prebuilt: {"error":"apigateway","detail":...}.
type apiError struct {
	status int
	body   []byte
	length string
}

func newAPIError(status int, detail string) apiError {
	body := []byte(`{"error":"apigateway","detail":` + strconv.Quote(detail) + "}")
	return apiError{status: status, body: body, length: strconv.Itoa(len(body))}
}

var (
	errNotFound    = newAPIError(http.StatusNotFound, "Not found")
	errInvalid     = newAPIError(http.StatusBadRequest, "Invalid request")
	errUnavailable = newAPIError(http.StatusServiceUnavailable, "Downstream service unavailable")
	errTimeout     = newAPIError(http.StatusGatewayTimeout, "Downstream timeout")
	errDownstream  = newAPIError(http.StatusBadGateway, "Downstream error")
	errOverloaded  = newAPIError(http.StatusTooManyRequests, "Too many requests")
	errDirectory   = newAPIError(http.StatusServiceUnavailable, "Service unavailable")
)

func (e apiError) write(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", e.length)
	w.WriteHeader(e.status)
	_, _ = w.Write(e.body)
}

// classify maps an error returned by reverse_proxy (nothing written yet)
// to apigw's answer. reverse_proxy itself would say 502 for a connect
// timeout and for a refused connection alike; apigw distinguishes them.
func classify(err error) (outcome, *apiError) {
	if errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "operation was canceled") {
		return outcomeCanceled, nil
	}
	var dialErr reverseproxy.DialError
	if errors.As(err, &dialErr) {
		// DialError hides its cause (no Unwrap): the message is all
		// there is to tell a connect timeout from a refusal.
		msg := dialErr.Error()
		if strings.Contains(msg, "timeout") || strings.Contains(msg, "deadline exceeded") {
			return outcomeTimeout, &errTimeout
		}
		return outcomeUnavailable, &errUnavailable
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return outcomeTimeout, &errTimeout
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return outcomeTimeout, &errTimeout
	}
	return outcomeError, &errDownstream
}
