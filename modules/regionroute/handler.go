// Package regionroute is the API gateway of the control silo: the
// http.handlers.sentry_region_route handler sends each request whose path
// names an organization, a region, a Sentry App, a DSN or a project key to
// the region that owns it, through Caddy's reverse_proxy, and passes every
// other request to the next handler (the control silo application).
package regionroute

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/routes"
	"github.com/sentrysilo/caddy-silo/modules/silo"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults, applied in Provision.
const (
	DefaultReadTimeout     = 60 * time.Second
	DefaultUploadTimeout   = 90 * time.Second
	DefaultMaxConcurrency  = 512
	DefaultBreakerFailures = 16
	DefaultBreakerWindow   = 60 * time.Second
)

// Handler is the API gateway (sentry_region_route). It matches the path
// against the ordered route table of Sentry's standalone apigw (control
// carve-outs, organization routes, uploads, _admin/cells, the error page
// DSN, Sentry Apps, the JS SDK loader, legacy pins to the default region,
// legacy short links), resolves the routing key through the sentry_silo
// directory, and proxies to the region's gateway address with apigw's
// header rules. Unknown organizations and regions get 404, a bad DSN 400,
// a refused connection 503, a timeout 504, other transport errors 502, a
// region over max_concurrency 429 and a region whose breaker is open 503,
// all as {"error":"apigateway","detail":...}. In monolith mode every
// request goes to the next handler.
//
// It sets the placeholder {http.sentry.region} to the region a request
// was sent to.
type Handler struct {
	// ReadTimeout is how long a region has to start answering once the
	// request is sent [60s], and the longest a body stream may stall
	// (nothing read from the region, or nothing of an upload taken by
	// it) before it is cut, at most an eighth of it and a second later
	// (see boundStalls).
	ReadTimeout caddy.Duration `json:"read_timeout,omitempty"`
	// UploadTimeout replaces ReadTimeout on the upload routes [90s].
	UploadTimeout caddy.Duration `json:"upload_timeout,omitempty"`
	// MaxConcurrency caps the requests in flight per region; beyond it
	// the answer is 429 [512].
	MaxConcurrency int `json:"max_concurrency,omitempty"`
	// Breaker opens a region after too many failures in a window.
	Breaker *BreakerConfig `json:"breaker,omitempty"`
	// ControlPath are more paths served by control, checked before the
	// table. Pattern segments: literal, * (one segment), # (digits),
	// {key} (not allowed here), ** (last: any rest).
	ControlPath []string `json:"control_path,omitempty"`
	// PinPath are more paths sent to the default region, checked after
	// ControlPath and before the table.
	PinPath []string `json:"pin_path,omitempty"`

	table      *routes.Compiled
	regions    map[string]*region
	defaultReg string
	appHost    string
	dir        *directory.Directory
	passAll    bool
	none       *series // metrics of requests that reached no region
	logger     *zap.Logger
	dirErrLog  *atomic.Int64 // when a directory error was last logged
}

// BreakerConfig is the per-region failure window: more than Failures
// connect errors, timeouts or 502/503/504 answers within one Window open
// the region (503) until the window turns.
type BreakerConfig struct {
	Failures int            `json:"failures,omitempty"`
	Window   caddy.Duration `json:"window,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.sentry_region_route",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision applies defaults, compiles the route table and loads one pair
// of reverse_proxy handlers per region. Offline and cheap.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.dirErrLog = new(atomic.Int64)
	app, err := silo.FromContext(ctx, "sentry_region_route")
	if err != nil {
		return err
	}
	if !app.Control() {
		app.WarnMonolithOptions(h.logger, "sentry_region_route", h.options())
		h.passAll = true
		return nil
	}

	if h.ReadTimeout == 0 {
		h.ReadTimeout = caddy.Duration(DefaultReadTimeout)
	}
	if h.UploadTimeout == 0 {
		h.UploadTimeout = caddy.Duration(DefaultUploadTimeout)
	}
	if h.MaxConcurrency == 0 {
		h.MaxConcurrency = DefaultMaxConcurrency
	}
	if h.Breaker == nil {
		h.Breaker = &BreakerConfig{}
	}
	if h.Breaker.Failures == 0 {
		h.Breaker.Failures = DefaultBreakerFailures
	}
	if h.Breaker.Window == 0 {
		h.Breaker.Window = caddy.Duration(DefaultBreakerWindow)
	}
	if err := h.Validate(); err != nil {
		return err
	}

	rows := make([]routes.Route, 0, len(h.ControlPath)+len(h.PinPath)+len(routes.Table))
	for _, p := range h.ControlPath {
		rows = append(rows, routes.Route{Pattern: p, Kind: routes.Control})
	}
	for _, p := range h.PinPath {
		rows = append(rows, routes.Route{Pattern: p, Kind: routes.Default})
	}
	rows = append(rows, routes.Table...)
	if h.table, err = routes.Compile(rows); err != nil {
		return err
	}

	h.dir = app.Directory()
	if h.dir == nil {
		return fmt.Errorf("sentry_silo app has no directory")
	}
	h.defaultReg = app.DefaultRegionName()
	if u := app.URLPrefixURL(); u != nil {
		h.appHost = u.Host
	}

	m := newMetrics(ctx.GetMetricsRegistry())
	h.none = m.series("none")
	h.regions = make(map[string]*region, len(app.RegionNames()))
	for _, name := range app.RegionNames() {
		r, ok := app.Region(name)
		if !ok {
			continue
		}
		u := r.Gateway
		if u == nil {
			u = r.Address
		}
		reg, err := newRegion(ctx, name, u, time.Duration(h.ReadTimeout), time.Duration(h.UploadTimeout),
			h.MaxConcurrency, h.Breaker.Failures, time.Duration(h.Breaker.Window), m.series(name))
		if err != nil {
			return err
		}
		h.regions[name] = reg // before anything can fail, so Cleanup releases it
	}
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if h.ReadTimeout < 0 || h.UploadTimeout < 0 {
		return fmt.Errorf("timeouts must be positive")
	}
	if h.MaxConcurrency < 0 {
		return fmt.Errorf("max_concurrency must be positive")
	}
	if h.Breaker != nil && (h.Breaker.Failures < 0 || h.Breaker.Window < 0) {
		return fmt.Errorf("breaker failures and window must be positive")
	}
	return checkExtraPaths(h.ControlPath, h.PinPath)
}

// checkExtraPaths refuses control_path and pin_path entries that cannot
// change where any request goes: a pattern given twice, one hidden by an
// entry checked before it (control_path entries come first, then
// pin_path, each in order), and one that the built-in route table
// already sends where it asks (routes.Unchanged says why).
func checkExtraPaths(control, pin []string) error {
	var earlier []extraPath
	for _, e := range slices.Concat(
		extraPaths(control, "control_path", routes.Control),
		extraPaths(pin, "pin_path", routes.Default),
	) {
		if err := checkExtraPattern(e.pattern); err != nil {
			return fmt.Errorf("%s %s", e.option, err)
		}
		for _, prev := range earlier {
			if routes.Covers(prev.pattern, e.pattern) {
				if routes.Covers(e.pattern, prev.pattern) && prev.option == e.option {
					return fmt.Errorf("%s %q is given twice", e.option, e.pattern)
				}
				return fmt.Errorf("%s %q does nothing: %s %q, checked before it, matches every path it matches", e.option, e.pattern, prev.option, prev.pattern)
			}
		}
		if why := routes.Unchanged(e.pattern, e.kind, routes.Table); why != "" {
			// A control_path overlapping a pin_path takes those paths
			// from it, so it does something after all.
			if e.kind != routes.Control || !slices.ContainsFunc(pin, func(p string) bool { return routes.Overlaps(e.pattern, p) }) {
				return fmt.Errorf("%s %q does nothing: %s", e.option, e.pattern, why)
			}
		}
		earlier = append(earlier, e)
	}
	return nil
}

// extraPath is one control_path or pin_path pattern.
type extraPath struct {
	option, pattern string
	kind            routes.Kind
}

func extraPaths(patterns []string, option string, kind routes.Kind) []extraPath {
	out := make([]extraPath, len(patterns))
	for i, p := range patterns {
		out[i] = extraPath{option, p, kind}
	}
	return out
}

// options names the options that are set, for the monolith warning.
func (h *Handler) options() []string {
	var out []string
	for _, o := range []struct {
		name string
		set  bool
	}{
		{"read_timeout", h.ReadTimeout != 0},
		{"upload_timeout", h.UploadTimeout != 0},
		{"max_concurrency", h.MaxConcurrency != 0},
		{"breaker", h.Breaker != nil},
		{"control_path", len(h.ControlPath) > 0},
		{"pin_path", len(h.PinPath) > 0},
	} {
		if o.set {
			out = append(out, o.name)
		}
	}
	return out
}

func checkExtraPattern(p string) error {
	if err := routes.ParsePattern(p); err != nil {
		return fmt.Errorf("%q: %w", p, err)
	}
	if _, err := routes.Compile([]routes.Route{{Pattern: p, Kind: routes.Control}}); err != nil {
		return err
	}
	return nil
}

// Cleanup releases the regions' shared limiters and breakers; ctx cleans
// up the reverse_proxy handlers it loaded. Safe after a failed Provision
// and when called twice.
func (h *Handler) Cleanup() error {
	for _, r := range h.regions {
		if r.stateKey != "" {
			_, _ = regionStates.Delete(r.stateKey)
			r.stateKey = ""
		}
	}
	return nil
}

// ServeHTTP routes one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.passAll {
		return next.ServeHTTP(w, r)
	}
	m := h.table.Lookup(r.URL.Path)
	if !m.Kind.Proxied() {
		return next.ServeHTTP(w, r)
	}
	start := time.Now()
	if hasDotSegment(r.URL.Path) {
		// The route matched on the literal prefix; a region (or a proxy
		// in front of it) that resolves the dots would serve another
		// path than the one we routed, e.g. a webhook endpoint that
		// capture never saw. Sentry's clients never send dot segments.
		h.none.observe(outcomeInvalid, time.Since(start).Seconds())
		errInvalid.write(w)
		return nil
	}
	reg, o, apiErr := h.resolve(r, m)
	if reg == nil {
		if o == outcomeNext {
			return next.ServeHTTP(w, r)
		}
		h.none.observe(o, time.Since(start).Seconds())
		if apiErr != nil {
			apiErr.write(w)
		}
		if ce := h.logger.Check(zapcore.DebugLevel, "request not routed"); ce != nil {
			ce.Write(zap.String("route", m.Kind.String()), zap.String("outcome", o.String()))
		}
		return nil
	}
	return h.proxy(w, r, next, reg, m.Upload, start)
}

// hasDotSegment reports whether the (decoded) path has a "." or ".."
// segment, however it was escaped on the wire.
func hasDotSegment(path string) bool {
	for len(path) > 0 {
		i := strings.IndexByte(path, '/')
		seg := path
		if i >= 0 {
			seg, path = path[:i], path[i+1:]
		} else {
			path = ""
		}
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// outcomeNext is resolve's "not ours after all" (an unknown project key
// falls through to control, as in Sentry).
const outcomeNext = numOutcomes

// resolve finds the region of a matched route. A nil region comes with
// the outcome and the error answer.
func (h *Handler) resolve(r *http.Request, m routes.Match) (*region, outcome, *apiError) {
	ctx := r.Context()
	var name string
	var err error
	if !plausibleKey(m.Key) {
		// No slug, uuid or key holds these; don't ask the database
		// (PostgreSQL refuses such text, which is no reason for a 5xx).
		if m.Kind == routes.ProjectKey {
			return nil, outcomeNext, nil
		}
		return nil, outcomeNotFound, &errNotFound
	}
	switch m.Kind {
	case routes.Organization:
		var org directory.Organization
		org, err = h.dir.Organization(ctx, m.Key)
		name = org.Region
	case routes.Region:
		name = m.Key
	case routes.Default:
		name = h.defaultReg
	case routes.ErrorPage:
		var def bool
		name, def, err = routes.RegionFromDSN(routes.DSNParam(r.URL.RawQuery), h.appHost)
		if err != nil {
			return nil, outcomeInvalid, &errInvalid
		}
		if def {
			name = h.defaultReg
		}
	case routes.SentryAppInstallation:
		var inst directory.SentryAppInstallation
		if inst, err = h.dir.SentryAppInstallation(ctx, m.Key); err == nil {
			var org directory.Organization
			org, err = h.dir.OrganizationByID(ctx, inst.OrganizationID)
			name = org.Region
		}
	case routes.SentryApp:
		var app directory.SentryApp
		if app, err = h.dir.SentryApp(ctx, m.Key); err == nil {
			var org directory.Organization
			org, err = h.dir.OrganizationByID(ctx, app.OwnerID)
			name = org.Region
		}
	case routes.ProjectKey:
		name, err = h.dir.ProjectKeyRegion(ctx, m.Key)
		if errors.Is(err, directory.ErrNotFound) {
			return nil, outcomeNext, nil
		}
	}
	if err != nil {
		switch {
		case errors.Is(err, directory.ErrNotFound):
			return nil, outcomeNotFound, &errNotFound
		case errors.Is(err, context.Canceled):
			return nil, outcomeCanceled, nil
		default:
			// While the database is down every request fails here: log
			// once a second, the metrics count them all.
			if now := time.Now().UnixNano(); now-h.dirErrLog.Load() >= int64(time.Second) {
				h.dirErrLog.Store(now)
				h.logger.Error("directory lookup failed", zap.String("route", m.Kind.String()), zap.Error(err))
			}
			return nil, outcomeDirectoryError, &errDirectory
		}
	}
	reg, ok := h.regions[name]
	if !ok {
		return nil, outcomeNotFound, &errNotFound
	}
	return reg, outcomeOK, nil
}

// plausibleKey rejects routing keys that no directory row can hold:
// invalid UTF-8 or control characters (NUL ...).
func plausibleKey(k string) bool {
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] == 0x7f {
			return false
		}
	}
	return utf8.ValidString(k)
}

var headerTrue = []string{"true"}

// proxy sends r to the region, and answers for it when the region can't.
func (h *Handler) proxy(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, reg *region, upload bool, start time.Time) error {
	if !reg.limit.acquire() {
		reg.m.observe(outcomeOverloaded, time.Since(start).Seconds())
		errOverloaded.write(w)
		return nil
	}
	if !reg.breaker.allow(start.UnixNano()) {
		reg.limit.release()
		reg.m.observe(outcomeBreakerOpen, time.Since(start).Seconds())
		errUnavailable.write(w)
		return nil
	}
	reg.m.inFlight.Inc()

	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.sentry.region", reg.nameValue)
	}
	orig := apigwRequest(r, reg)
	origBody := r.Body
	body := wrapBody(r)
	// One deferred call undoes it all, also when reverse_proxy aborts a
	// broken stream with panic(http.ErrAbortHandler) (client gone, or the
	// region's body failed midway), which is then counted. A closure
	// returned by apigwRequest cost an allocation (128 B) per request.
	finished := false
	defer func() {
		if !finished {
			reg.m.observe(outcomeAborted, time.Since(start).Seconds())
		}
		r.Body = origBody
		orig.restore(r)
		reg.m.inFlight.Dec()
		reg.limit.release()
	}()

	gw := getWriter(w, reg.base+r.URL.EscapedPath())
	handler := reg.proxy
	if upload {
		handler = reg.upload
	}
	err := handler.ServeHTTP(gw, r, next)
	finished = true
	status := gw.status
	putWriter(gw)

	o := h.settle(w, reg, err, status, body)
	end := time.Now()
	if o.failure() {
		reg.breaker.fail(end.UnixNano())
	}
	reg.m.observe(o, end.Sub(start).Seconds())
	if o == outcomeCanceled {
		return err
	}
	return nil
}

// apigwRequest applies apigw's request rules to r (reverse_proxy clones
// it) and returns what restore puts back, so that the access log shows
// what the client sent. A nil header value tells reverse_proxy to leave
// that X-Forwarded-* header out rather than add its own.
func apigwRequest(r *http.Request, reg *region) (orig clientHead) {
	orig.host = r.Host
	orig.proto, orig.hadProto = r.Header["X-Forwarded-Proto"]
	orig.fwdHost, orig.hadFwdHost = r.Header["X-Forwarded-Host"]
	orig.gw, orig.hadGW = r.Header["X-Apigateway"]
	r.Host = reg.host
	r.Header["X-Apigateway"] = headerTrue
	r.Header["X-Forwarded-Proto"] = nil
	if !orig.hadFwdHost {
		r.Header["X-Forwarded-Host"] = nil
	}
	return orig
}

// clientHead is what apigwRequest changed in the client's request.
type clientHead struct {
	host                        string
	proto, fwdHost, gw          []string
	hadProto, hadFwdHost, hadGW bool
}

func (o *clientHead) restore(r *http.Request) {
	r.Host = o.host
	restore(r.Header, "X-Apigateway", o.gw, o.hadGW)
	restore(r.Header, "X-Forwarded-Proto", o.proto, o.hadProto)
	restore(r.Header, "X-Forwarded-Host", o.fwdHost, o.hadFwdHost)
}

// settle says how a proxied request ended and, when reverse_proxy failed
// before any answer went out, answers with apigw's error for it.
func (h *Handler) settle(w http.ResponseWriter, reg *region, err error, status int, body *clientBody) outcome {
	switch {
	case err == nil:
		if status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout {
			return outcomeUpstreamError
		}
		return outcomeOK
	case status != 0:
		// reverse_proxy failed after the head went out; nothing to
		// answer, and not our error to report twice.
		return outcomeError
	}
	var o outcome
	var apiErr *apiError
	if bodyErr := body.failed(); bodyErr != nil {
		// Answer even when the server saw the client half-close (and
		// canceled the request): it may still be reading.
		o, apiErr = classifyClient(bodyErr)
	} else {
		o, apiErr = classify(err)
	}
	if apiErr != nil {
		apiErr.write(w)
	}
	if o != outcomeCanceled && o != outcomeInvalid {
		h.logger.Warn("region request failed",
			zap.String("region", reg.name), zap.String("outcome", o.String()), zap.Error(err))
	}
	return o
}

func restore(h http.Header, key string, v []string, had bool) {
	if had {
		h[key] = v
	} else {
		delete(h, key)
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
