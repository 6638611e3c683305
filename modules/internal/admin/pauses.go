package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"unicode/utf8"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// Bounds of a pause's request body.
const (
	maxPauseBody   = 4 << 10
	maxPauseReason = 500
	maxPauseBy     = 200
)

// GET /sentry_silo/regions
func regionList(a API, w http.ResponseWriter, r *http.Request, _ []string) error {
	if _, err := params(r); err != nil {
		return err
	}
	ctx, cancel := opContext(r)
	defer cancel()
	pauses, err := a.pauseIndex(ctx)
	if err != nil {
		return storeError("reading the pauses", err)
	}
	names := a.regions()
	out := make([]RegionView, 0, len(names))
	for _, n := range names {
		out = append(out, RegionView{Name: n, BreakerOpen: a.BreakerOpen != nil && a.BreakerOpen(n), Paused: pauses.regions[n]})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"regions": out})
}

// GET /sentry_silo/pauses
func pauseList(a API, w http.ResponseWriter, r *http.Request, _ []string) error {
	st := a.Stores.Pauses
	if st == nil {
		return unavailable("pauses")
	}
	if _, err := params(r); err != nil {
		return err
	}
	ctx, cancel := opContext(r)
	defer cancel()
	ps, err := st.Pauses(ctx)
	if err != nil {
		return storeError("reading the pauses", err)
	}
	out := make([]*PauseView, 0, len(ps))
	for _, p := range ps {
		out = append(out, pauseView(p))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"pauses": out})
}

func pauseRegion(a API, w http.ResponseWriter, r *http.Request, segs []string) error {
	if err := a.checkRegion(segs[1]); err != nil {
		return err
	}
	return a.pause(w, r, store.PauseRegion, segs[1])
}

func resumeRegion(a API, w http.ResponseWriter, r *http.Request, segs []string) error {
	if err := a.checkRegion(segs[1]); err != nil {
		return err
	}
	return a.resume(w, r, store.PauseRegion, segs[1])
}

func pauseMailbox(a API, w http.ResponseWriter, r *http.Request, segs []string) error {
	if err := checkName("mailbox", segs[1]); err != nil {
		return err
	}
	return a.pause(w, r, store.PauseMailbox, segs[1])
}

func resumeMailbox(a API, w http.ResponseWriter, r *http.Request, segs []string) error {
	if err := checkName("mailbox", segs[1]); err != nil {
		return err
	}
	return a.resume(w, r, store.PauseMailbox, segs[1])
}

// checkRegion refuses a region that is not configured.
func (a API) checkRegion(name string) error {
	if !slices.Contains(a.regions(), name) {
		return httpError(http.StatusNotFound, "no region %q is configured", name)
	}
	return nil
}

// pauseRequest is a pause's optional body.
type pauseRequest struct {
	Reason string `json:"reason"`
	By     string `json:"by"`
}

func readPauseRequest(r *http.Request) (pauseRequest, error) {
	var req pauseRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPauseBody+1))
	if err != nil {
		return req, badRequest("reading the request body: %v", err)
	}
	if len(body) > maxPauseBody {
		return req, badRequest("request body over %d bytes", maxPauseBody)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, badRequest(`request body: %v (expected {"reason": "...", "by": "..."}, both optional)`, err)
	}
	if dec.More() {
		return req, badRequest("request body: one JSON object expected")
	}
	if utf8.RuneCountInString(req.Reason) > maxPauseReason {
		return req, badRequest("reason: longer than %d characters", maxPauseReason)
	}
	if utf8.RuneCountInString(req.By) > maxPauseBy {
		return req, badRequest("by: longer than %d characters", maxPauseBy)
	}
	return req, nil
}

// requester names who sent r when the body does not: the client
// certificate's common name under remote admin, else the client's IP.
func requester(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && r.TLS.PeerCertificates[0].Subject.CommonName != "" {
		return r.TLS.PeerCertificates[0].Subject.CommonName
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

func (a API) pause(w http.ResponseWriter, r *http.Request, kind, name string) error {
	st := a.Stores.Pauses
	if st == nil {
		return unavailable("pauses")
	}
	if _, err := params(r); err != nil {
		return err
	}
	req, err := readPauseRequest(r)
	if err != nil {
		return err
	}
	if req.By == "" {
		req.By = requester(r)
	}
	ctx, cancel := opContext(r)
	defer cancel()
	p, created, err := st.Pause(ctx, store.Pause{Kind: kind, Name: name, PausedAt: a.now(), PausedBy: req.By, Reason: req.Reason})
	if err != nil {
		return storeError("pausing "+kind+" "+name, err)
	}
	a.wake() // a full scan reads the pauses again
	return writeJSON(w, http.StatusOK, map[string]any{"pause": pauseView(p), "created": created})
}

func (a API) resume(w http.ResponseWriter, r *http.Request, kind, name string) error {
	st := a.Stores.Pauses
	if st == nil {
		return unavailable("pauses")
	}
	if _, err := params(r); err != nil {
		return err
	}
	ctx, cancel := opContext(r)
	defer cancel()
	resumed, err := st.Resume(ctx, kind, name)
	if err != nil {
		return storeError("resuming "+kind+" "+name, err)
	}
	a.wake() // the paused mailboxes are due again
	return writeJSON(w, http.StatusOK, map[string]any{"kind": kind, "name": name, "resumed": resumed})
}
