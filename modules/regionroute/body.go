package regionroute

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"
)

// clientBody remembers why reading the client's request body failed, so
// that a truncated or oversized upload is answered as the client's fault
// (400, 413) and not as a region failure (502, counted by the breaker).
// Go's transport may still read the body after RoundTrip returns, hence
// the atomic.
type clientBody struct {
	io.ReadCloser
	err atomic.Pointer[error]
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.err.Load() == nil {
		b.err.Store(&err)
	}
	return n, err
}

// failed returns the read error, if any.
func (b *clientBody) failed() error {
	if b == nil {
		return nil
	}
	if p := b.err.Load(); p != nil {
		return *p
	}
	return nil
}

// wrapBody installs a clientBody on requests that have a body; GETs (the
// hot path) have none and cost nothing.
func wrapBody(r *http.Request) *clientBody {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	b := &clientBody{ReadCloser: r.Body}
	r.Body = b
	return b
}

var errTooLarge = newAPIError(http.StatusRequestEntityTooLarge, "Request too large")

// classifyClient maps a failure to read the client's body.
func classifyClient(err error) (outcome, *apiError) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return outcomeInvalid, &errTooLarge
	}
	return outcomeInvalid, &errInvalid
}
