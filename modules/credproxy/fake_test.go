package credproxy

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sentrysilo/caddy-silo/modules/internal/credentials"
	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/rejection"
	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

const testSecret = "hush-hush-im-invisible"

// memLookups is an in-memory Lookups with one lock per row; it counts
// every read so tests can assert that rejected calls touched nothing.
type memLookups struct {
	mu           sync.Mutex
	rowLocks     map[int64]*sync.Mutex
	orgInts      map[int64]directory.OrganizationIntegration
	integrations map[int64]directory.Integration
	identities   map[int64]json.RawMessage
	reads        atomic.Int64
}

func newMemLookups() *memLookups {
	return &memLookups{
		rowLocks:     map[int64]*sync.Mutex{},
		orgInts:      map[int64]directory.OrganizationIntegration{},
		integrations: map[int64]directory.Integration{},
		identities:   map[int64]json.RawMessage{},
	}
}

func (s *memLookups) add(oiID int64, integ directory.Integration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.integrations[integ.ID] = integ
	s.orgInts[oiID] = directory.OrganizationIntegration{ID: oiID, OrganizationID: 1, IntegrationID: integ.ID}
}

func (s *memLookups) OrganizationIntegration(_ context.Context, id int64) (directory.OrganizationIntegration, error) {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	oi, ok := s.orgInts[id]
	if !ok {
		return oi, directory.ErrNotFound
	}
	return oi, nil
}

func (s *memLookups) IntegrationByID(_ context.Context, id int64) (directory.Integration, error) {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.integrations[id]
	if !ok {
		return i, directory.ErrNotFound
	}
	return i, nil
}

func (s *memLookups) Identity(_ context.Context, id int64) (directory.Identity, error) {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.identities[id]
	if !ok {
		return directory.Identity{}, directory.ErrNotFound
	}
	return directory.Identity{ID: id, Data: d}, nil
}

func (s *memLookups) lock(id int64) func() {
	s.mu.Lock()
	l, ok := s.rowLocks[id]
	if !ok {
		l = &sync.Mutex{}
		s.rowLocks[id] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (s *memLookups) UpdateIntegrationMetadata(_ context.Context, id int64, fn func(json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, error) {
	defer s.lock(id)()
	s.mu.Lock()
	integ, ok := s.integrations[id]
	s.mu.Unlock()
	if !ok {
		return nil, directory.ErrNotFound
	}
	next, write, err := fn(integ.Metadata)
	if err != nil || !write {
		return integ.Metadata, err
	}
	s.mu.Lock()
	integ.Metadata = next
	s.integrations[id] = integ
	s.mu.Unlock()
	return next, nil
}

func (s *memLookups) UpdateIdentityData(_ context.Context, id int64, fn func(json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, error) {
	defer s.lock(-id)()
	s.mu.Lock()
	cur, ok := s.identities[id]
	s.mu.Unlock()
	if !ok {
		return nil, directory.ErrNotFound
	}
	next, write, err := fn(cur)
	if err != nil || !write {
		return cur, err
	}
	s.mu.Lock()
	s.identities[id] = next
	s.mu.Unlock()
	return next, nil
}

func (s *memLookups) metadata(id int64) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m map[string]any
	_ = json.Unmarshal(s.integrations[id].Metadata, &m)
	return m
}

// thirdParty is a fake third party on 127.0.0.1 that records what reached
// it.
type thirdParty struct {
	*httptest.Server
	mu       sync.Mutex
	requests []recorded
	handler  atomic.Value // http.HandlerFunc
}

type recorded struct {
	Method, URI, Host string
	Header            http.Header
	Body              string
}

func newThirdParty(t *testing.T) *thirdParty {
	tp := &thirdParty{}
	tp.handler.Store(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	tp.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		tp.mu.Lock()
		tp.requests = append(tp.requests, recorded{r.Method, r.RequestURI, r.Host, r.Header.Clone(), string(body)})
		tp.mu.Unlock()
		tp.handler.Load().(http.HandlerFunc)(w, r)
	}))
	t.Cleanup(tp.Close)
	return tp
}

func (tp *thirdParty) handle(h http.HandlerFunc) { tp.handler.Store(h) }

func (tp *thirdParty) count() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.requests)
}

func (tp *thirdParty) last(t *testing.T) recorded {
	t.Helper()
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if len(tp.requests) == 0 {
		t.Fatal("no request reached the third party")
	}
	return tp.requests[len(tp.requests)-1]
}

type fixture struct {
	proxy *proxy
	store *memLookups
	logs  *observer.ObservedLogs
}

// newFixture builds a proxy that allows 127.0.0.1 (the fake third
// parties) unless allow is given.
func newFixture(t *testing.T, cfg credentials.Config, allow ...string) *fixture {
	if allow == nil {
		allow = []string{"127.0.0.1"}
	}
	al, _, err := parseAllowList(allow)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	st := newMemLookups()
	tr := &http.Transport{DialContext: (&guardedDialer{allow: al}).DialContext, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	cfg.HTTPClient = client
	p := &proxy{
		secret:         func() string { return testSecret },
		lookups:        func() Lookups { return st },
		creds:          credentials.New(cfg, func() credentials.Store { return st }),
		client:         client,
		allow:          al,
		connectTimeout: time.Second,
		readTimeout:    5 * time.Second,
		maxBodySize:    1 << 20,
		logger:         zap.New(core),
	}
	p.rejections = rejection.New(p.logger, "integration proxy request rejected", rejectionsTotal)
	return &fixture{proxy: p, store: st, logs: logs}
}

// call is one signed request to the proxy.
type call struct {
	method, base, path, oi, body string
	header                       map[string]string
	sig                          string // "" means sign correctly
	unsigned                     bool
}

func (f *fixture) do(t *testing.T, c call) *httptest.ResponseRecorder {
	t.Helper()
	if c.method == "" {
		c.method = http.MethodPost
	}
	r := httptest.NewRequest(c.method, subnet.ProxyPath, strings.NewReader(c.body))
	if c.oi != "" {
		r.Header.Set(subnet.HeaderOrganizationIntegration, c.oi)
	}
	if c.base != "" {
		r.Header.Set(subnet.HeaderBaseURL, c.base)
	}
	r.Header.Set(subnet.HeaderPath, c.path)
	sig := c.sig
	if sig == "" {
		sig = subnet.Sign(testSecret, c.base, c.path, c.oi, []byte(c.body))
	}
	if !c.unsigned {
		r.Header.Set(subnet.HeaderSignature, sig)
	}
	for k, v := range c.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.proxy.serve(w, r)
	return w
}

func (f *fixture) logText() string {
	var b strings.Builder
	for _, e := range f.logs.All() {
		b.WriteString(e.Message)
		for k, v := range e.ContextMap() {
			b.WriteString(" " + k + "=")
			b.WriteString(strings.TrimSpace(strings.ReplaceAll(jsonString(v), "\n", " ")))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func testKey(t *testing.T) *rsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

var zapNop = zap.NewNop()
