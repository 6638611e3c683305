package webhookcapture

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/mailbox"
	"github.com/sentrysilo/caddy-silo/modules/internal/rejection"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
)

// fakeSource is the SQL side of the directory for tests.
type fakeSource struct {
	directory.Source // unused lookups panic
	orgs             map[int64]directory.Organization
	integrations     map[string]directory.Integration // provider:external_id
}

func (f *fakeSource) OrganizationByID(_ context.Context, id int64) (directory.Organization, error) {
	if o, ok := f.orgs[id]; ok {
		return o, nil
	}
	return directory.Organization{}, directory.ErrNotFound
}

func (f *fakeSource) OrganizationBySlug(_ context.Context, slug string) (directory.Organization, error) {
	for _, o := range f.orgs {
		if o.Slug == slug {
			return o, nil
		}
	}
	return directory.Organization{}, directory.ErrNotFound
}

func (f *fakeSource) IntegrationByExternalID(_ context.Context, provider, externalID string) (directory.Integration, error) {
	if in, ok := f.integrations[provider+":"+externalID]; ok {
		return in, nil
	}
	return directory.Integration{}, directory.ErrNotFound
}

func (f *fakeSource) IntegrationByID(_ context.Context, id int64) (directory.Integration, error) {
	for _, in := range f.integrations {
		if in.ID == id {
			return in, nil
		}
	}
	return directory.Integration{}, directory.ErrNotFound
}

// fakeStore keeps inserted rows in memory.
type fakeStore struct {
	mu     sync.Mutex
	rows   []store.NewPayload
	keys   map[string]int64
	err    error
	nextID int64
}

func (s *fakeStore) Engine() string { return "fake" }

func (s *fakeStore) InsertPayloads(_ context.Context, ps []store.NewPayload) ([]store.InsertResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	if s.keys == nil {
		s.keys = map[string]int64{}
	}
	out := make([]store.InsertResult, len(ps))
	for i, p := range ps {
		k := p.MailboxName + "\x00" + p.DeliveryKey
		if id, ok := s.keys[k]; ok && p.DeliveryKey != "" {
			out[i] = store.InsertResult{ID: id, Duplicate: true}
			continue
		}
		s.nextID++
		cp := p
		cp.Body = append([]byte(nil), p.Body...)
		cp.Headers = p.Headers.Clone()
		s.rows = append(s.rows, cp)
		s.keys[k] = s.nextID
		out[i] = store.InsertResult{ID: s.nextID}
	}
	return out, nil
}

func (s *fakeStore) stored() []store.NewPayload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.NewPayload(nil), s.rows...)
}

type fixture struct {
	h     *Handler
	st    *fakeStore
	woken chan []string
	next  *countingNext
}

type countingNext struct {
	mu    sync.Mutex
	calls int
	body  []byte
}

func (n *countingNext) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	b, _ := io.ReadAll(r.Body)
	n.mu.Lock()
	n.calls++
	n.body = b
	n.mu.Unlock()
	w.WriteHeader(299)
	return nil
}

func newFixture(t testing.TB, regions map[string]string) *fixture {
	t.Helper()
	src := &fakeSource{
		orgs: map[int64]directory.Organization{
			1: {ID: 1, Slug: "acme", Region: "us"},
			2: {ID: 2, Slug: "beta", Region: "de"},
		},
		integrations: map[string]directory.Integration{
			"github:555": {ID: 10, Provider: "github", ExternalID: "555", Organizations: []directory.OrganizationIntegration{
				{OrganizationID: 1, Region: "us"}, {OrganizationID: 2, Region: "de"}}},
			"slack:T123": {ID: 13, Provider: "slack", ExternalID: "T123", Organizations: []directory.OrganizationIntegration{
				{OrganizationID: 1, Region: "us"}, {OrganizationID: 2, Region: "de"}}},
			"discord:G1": {ID: 15, Provider: "discord", ExternalID: "G1", Organizations: []directory.OrganizationIntegration{
				{OrganizationID: 2, Region: "de"}}},
		},
	}
	if regions == nil {
		regions = map[string]string{"us": "http://127.0.0.1:1", "de": "http://127.0.0.1:1"}
	}
	urls := map[string]*url.URL{}
	for n, a := range regions {
		u, err := url.Parse(a)
		if err != nil {
			t.Fatal(err)
		}
		urls[n] = u
	}
	st := &fakeStore{}
	f := &fixture{st: st, woken: make(chan []string, 100), next: &countingNext{}}
	h := &Handler{MaxBodySize: 1 << 16, active: true, logger: zap.NewNop()}
	h.rejections = rejection.New(h.logger, "webhook rejected", rejectedTotal)
	h.env = &webhooks.Env{
		Dir:         directory.New(src, directory.Options{}),
		KnownRegion: func(n string) bool { _, ok := urls[n]; return ok },
	}
	h.bucketer = mailbox.NewBucketer(3000, nil)
	h.batcher = mailbox.NewBatcher(st.InsertPayloads, mailbox.BatcherOptions{OnCommit: func(m []string) {
		select {
		case f.woken <- m:
		default:
		}
	}})
	h.proxy = newRegionProxy(func(n string) (*url.URL, bool) { u, ok := urls[n]; return u, ok })
	t.Cleanup(func() { _ = h.Cleanup() })
	f.h = h
	return f
}

func (f *fixture) do(t *testing.T, method, target string, header http.Header, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, bytes.NewReader(body))
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	if err := f.h.ServeHTTP(w, r, f.next); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return w
}

func githubHeader(delivery string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-GitHub-Event", "push")
	h.Set("X-GitHub-Delivery", delivery)
	h.Set("X-Hub-Signature-256", "sha256=abc")
	return h
}

// §7 case 37, with a body that is not UTF-8: both rows keep the body
// byte for byte, all headers, the method, the full path and query.
func TestCaptureGitHubStoresRawRequestPerRegion(t *testing.T) {
	f := newFixture(t, nil)
	body := append([]byte(`{"installation":{"id":555},"repository":{"id":4242},"x":"`), 0xff, 0xfe, 0xc3, 0x80, 0xc3, '"', '}')
	w := f.do(t, "POST", "/extensions/github/webhook/?a=1&b=%20", githubHeader("d-1"), body)
	if w.Code != 202 || w.Body.Len() != 0 {
		t.Fatalf("status %d body %q", w.Code, w.Body.String())
	}
	rows := f.st.stored()
	if len(rows) != 2 {
		t.Fatalf("%d rows", len(rows))
	}
	names := map[string]bool{}
	for _, r := range rows {
		names[r.MailboxName] = true
		if !bytes.Equal(r.Body, body) {
			t.Errorf("body changed: %q", r.Body)
		}
		if r.Method != "POST" || r.Path != "/extensions/github/webhook/?a=1&b=%20" || r.IntegrationID != 10 || r.Provider != "github" || r.DeliveryKey != "d-1" {
			t.Errorf("row %+v", r)
		}
		if r.Headers.Get("X-Hub-Signature-256") != "sha256=abc" || r.Headers.Get("X-GitHub-Event") != "push" {
			t.Errorf("headers %v", r.Headers)
		}
		if r.DestinationType != "" && r.DestinationType != store.DestinationRegion {
			t.Errorf("destination %q", r.DestinationType)
		}
	}
	// Sentry's newest names: GitHub's mailboxes are always split by
	// repository (4242 % 100) and event type.
	if !names["github:us:10:42:push"] || !names["github:de:10:42:push"] {
		t.Errorf("mailboxes %v", names)
	}
	select {
	case m := <-f.woken:
		if len(m) != 2 {
			t.Errorf("woke %v", m)
		}
	case <-time.After(time.Second):
		t.Error("drainer not woken")
	}
}

func TestCaptureDuplicateDeliveryStoredOnce(t *testing.T) {
	f := newFixture(t, nil)
	body := []byte(`{"installation":{"id":555}}`)
	for i := 0; i < 3; i++ {
		if w := f.do(t, "POST", "/extensions/github/webhook/", githubHeader("same"), body); w.Code != 202 {
			t.Fatalf("copy %d: %d", i, w.Code)
		}
	}
	if n := len(f.st.stored()); n != 2 {
		t.Fatalf("%d rows, want 2 (one per region)", n)
	}
}

func TestCaptureStoreDownIs503(t *testing.T) {
	f := newFixture(t, nil)
	f.st.err = fmt.Errorf("dial tcp: %w", store.ErrUnavailable)
	w := f.do(t, "POST", "/extensions/github/webhook/", githubHeader("d"), []byte(`{"installation":{"id":555}}`))
	if w.Code != 503 {
		t.Fatalf("status %d", w.Code)
	}
	f.st.err = errors.New("any other insert error")
	w = f.do(t, "POST", "/extensions/github/webhook/", githubHeader("d"), []byte(`{"installation":{"id":555}}`))
	if w.Code != 503 {
		t.Fatalf("status %d", w.Code)
	}
}

func TestCaptureShed(t *testing.T) {
	f := newFixture(t, nil)
	f.h.Shed = []ShedRule{{Provider: "github"}}
	w := f.do(t, "POST", "/extensions/github/webhook/", githubHeader("d"), []byte(`{"installation":{"id":555}}`))
	if w.Code != 429 || w.Header().Get("Retry-After") != "60" {
		t.Fatalf("status %d retry-after %q", w.Code, w.Header().Get("Retry-After"))
	}
	f.h.Shed = []ShedRule{{Provider: "github", IntegrationID: 99}}
	if w := f.do(t, "POST", "/extensions/github/webhook/", githubHeader("d"), []byte(`{"installation":{"id":555}}`)); w.Code != 202 {
		t.Fatalf("other integration shed: %d", w.Code)
	}
	f.h.Shed = []ShedRule{{Provider: "github", IntegrationID: 10}}
	if w := f.do(t, "POST", "/extensions/github/webhook/", githubHeader("e"), []byte(`{"installation":{"id":555}}`)); w.Code != 429 {
		t.Fatalf("integration shed: %d", w.Code)
	}
	if n := len(f.st.stored()); n != 2 {
		t.Fatalf("%d rows, want only the 2 of the unshed request", n)
	}
}

func TestCaptureTooLarge(t *testing.T) {
	f := newFixture(t, nil)
	f.h.MaxBodySize = 64
	w := f.do(t, "POST", "/extensions/github/webhook/", githubHeader("d"), bytes.Repeat([]byte("x"), 65))
	if w.Code != 413 {
		t.Fatalf("status %d", w.Code)
	}
	// Without a Content-Length the reader still stops at the limit.
	r := httptest.NewRequest("POST", "/extensions/github/webhook/", io.MultiReader(strings.NewReader(strings.Repeat("y", 100))))
	r.ContentLength = -1
	rw := httptest.NewRecorder()
	_ = f.h.ServeHTTP(rw, r, f.next)
	if rw.Code != 413 {
		t.Fatalf("chunked: status %d", rw.Code)
	}
	if len(f.st.stored()) != 0 {
		t.Fatal("stored an oversized body")
	}
}

func TestPassOn(t *testing.T) {
	f := newFixture(t, nil)
	for _, target := range []string{"/api/0/organizations/acme/", "/extensions/vercel/webhook/", "/extensions/slack/setup/", "/extensions/github/installation/1/"} {
		w := f.do(t, "POST", target, http.Header{"X-Github-Event": {"installation"}}, []byte("body"))
		if w.Code != 299 {
			t.Errorf("%s: status %d, want the next handler", target, w.Code)
		}
	}
	// A body the parser read is handed on intact.
	w := f.do(t, "POST", "/extensions/github/webhook/", http.Header{"Content-Type": {"application/json"}, "X-Github-Event": {"installation"}}, []byte(`{"installation":{"id":555}}`))
	if w.Code != 299 || string(f.next.body) != `{"installation":{"id":555}}` {
		t.Fatalf("status %d body %q", w.Code, f.next.body)
	}
	f.h.active = false // monolith
	if w := f.do(t, "POST", "/extensions/github/webhook/", githubHeader("d"), []byte(`{"installation":{"id":555}}`)); w.Code != 299 {
		t.Fatalf("monolith: %d", w.Code)
	}
	if len(f.st.stored()) != 0 {
		t.Fatal("stored something")
	}
}

func TestCallbackPayload(t *testing.T) {
	f := newFixture(t, nil)
	form := url.Values{"team_id": {"T123"}, "response_url": {"https://hooks.slack.com/commands/1"}}.Encode()
	w := f.do(t, "POST", "/extensions/slack/commands/", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, []byte(form))
	if w.Code != 200 || w.Body.Len() != 0 {
		t.Fatalf("status %d body %q", w.Code, w.Body.String())
	}
	rows := f.st.stored()
	if len(rows) != 1 || rows[0].DestinationType != store.DestinationCallback || rows[0].CallbackURL != "https://hooks.slack.com/commands/1" ||
		rows[0].Region != "de" || rows[0].MailboxName != "slack:de:13" {
		t.Fatalf("rows %+v", rows)
	}
	body := []byte(`{"type":2,"guild_id":"G1","application_id":"app","token":"tok"}`)
	w = f.do(t, "POST", "/extensions/discord/interactions/", http.Header{"Content-Type": {"application/json"}}, body)
	if w.Code != 200 || w.Body.String() != `{"type":5,"data":{"flags":64}}` || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("discord: %d %q", w.Code, w.Body.String())
	}
}

func TestSynchronousProxy(t *testing.T) {
	var hits sync.Map
	region := func(name string, status int) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			hits.Store(name, string(b))
			w.Header().Set("X-Region", name)
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"from":%q,"path":%q}`, name, r.URL.RequestURI())
		}))
	}
	us, de := region("us", 404), region("de", 200)
	defer us.Close()
	defer de.Close()
	f := newFixture(t, map[string]string{"us": us.URL, "de": de.URL})

	// A Slack block action without response_url goes to every region; the
	// 2xx answer wins.
	payload := url.Values{"payload": {`{"type":"block_actions","team":{"id":"T123"},"actions":[{"action_id":"resolve"}]}`}}.Encode()
	w := f.do(t, "POST", "/extensions/slack/action/?q=1", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, []byte(payload))
	if w.Code != 200 || w.Header().Get("X-Region") != "de" || !strings.Contains(w.Body.String(), `"path":"/extensions/slack/action/?q=1"`) {
		t.Fatalf("all regions: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if w.Header().Get("X-Sentry-Proxy-URL") != de.URL+"/extensions/slack/action/" {
		t.Errorf("proxy url %q", w.Header().Get("X-Sentry-Proxy-URL"))
	}
	for _, n := range []string{"us", "de"} {
		if err := harness.Poll(5*time.Second, func() bool { b, ok := hits.Load(n); return ok && b == payload }); err != nil {
			b, _ := hits.Load(n)
			t.Fatalf("region %s got %v: %v", n, b, err)
		}
	}

	// Every region down: 502 naming each error.
	f2 := newFixture(t, map[string]string{"us": "http://127.0.0.1:1", "de": "http://127.0.0.1:1"})
	w = f2.do(t, "POST", "/extensions/slack/action/", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, []byte(payload))
	var detail struct {
		Regions map[string]string `json:"regions"`
	}
	if w.Code != 502 || json.Unmarshal(w.Body.Bytes(), &detail) != nil || len(detail.Regions) != 2 {
		t.Fatalf("all down: %d %s", w.Code, w.Body)
	}
}

func TestConcurrentCaptures(t *testing.T) {
	f := newFixture(t, nil)
	const n = 200
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := httptest.NewRequest("POST", "/extensions/github/webhook/", strings.NewReader(`{"installation":{"id":555}}`))
			r.Header = githubHeader("d-" + strconv.Itoa(i))
			w := httptest.NewRecorder()
			_ = f.h.ServeHTTP(w, r, f.next)
			codes[i] = w.Code
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 202 {
			t.Fatalf("request %d: %d", i, c)
		}
	}
	if got := len(f.st.stored()); got != 2*n {
		t.Fatalf("%d rows, want %d", got, 2*n)
	}
}

func BenchmarkCaptureGitHub(b *testing.B) {
	f := newFixture(b, nil)
	body := []byte(`{"installation":{"id":555},"repository":{"id":1}}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			r := httptest.NewRequest("POST", "/extensions/github/webhook/", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("X-GitHub-Event", "push")
			w := httptest.NewRecorder()
			_ = f.h.ServeHTTP(w, r, f.next)
		}
	})
}
