package webhooks

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
)

// botTokens stands in for the credential manager: integration 13 has a
// bot token, every other one none.
type botTokens struct{}

const testBotToken = "xoxb-test-bot-token"

var errNoToken = errors.New("credentials: not valid: slack integration has no access_token")

func (botTokens) AuthorizeSlackBot(_ context.Context, in directory.Integration, req *http.Request) error {
	if in.ID != 13 {
		return errNoToken
	}
	req.Header.Set("Authorization", "Bearer "+testBotToken)
	return nil
}

// fakeSlack is Slack's Web API on loopback: it records each call and
// answers with answer (status 200 unless status is set).
type fakeSlack struct {
	srv    *httptest.Server
	mu     sync.Mutex
	calls  []string // "method auth content-type body"
	answer string
	status int
	stall  chan struct{} // when set, calls wait on it
}

func newFakeSlack(t *testing.T) *fakeSlack {
	f := &fakeSlack{answer: `{"ok":true}`}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.calls = append(f.calls, r.URL.Path+" "+r.Header.Get("Authorization")+" "+r.Header.Get("Content-Type")+" "+string(body))
		answer, status, stall := f.answer, f.status, f.stall
		f.mu.Unlock()
		if stall != nil {
			select {
			case <-stall:
			case <-r.Context().Done():
			}
		}
		if status != 0 {
			w.WriteHeader(status)
		}
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSlack) api(t *testing.T, timeout time.Duration) *SlackAPI {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(f.srv.Certificate())
	api, err := NewSlackAPI(SlackAPIOptions{Base: f.srv.URL + "/api", Auth: botTokens{}, Timeout: timeout, RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	return api
}

func TestSlackAPICall(t *testing.T) {
	ctx := context.Background()
	call := func(id int64) *SlackCall {
		return &SlackCall{Method: "views.open", Integration: directory.Integration{ID: id}, Body: []byte(`{"trigger_id":"t"}`), Kind: "loading_modal"}
	}
	cases := []struct {
		name     string
		id       int64
		answer   string
		status   int
		wantErr  string // "" for success
		wantSeen bool
	}{
		{"ok", 13, `{"ok":true,"view":{"id":"V1"}}`, 0, "", true},
		{"slack refuses the trigger", 13, `{"ok":false,"error":"expired_trigger_id"}`, 0, "slack views.open: expired_trigger_id", true},
		{"an error code that is not one is not repeated", 13, `{"ok":false,"error":"<script>xoxb-stolen"}`, 0, "invalid_error_code", true},
		{"a 5xx", 13, `oops`, 500, "answered 500", true},
		{"not JSON", 13, `<html>`, 0, "answered 200", true},
		{"no bot token: Slack is not called", 14, `{"ok":true}`, 0, "integration 14", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeSlack(t)
			f.answer, f.status = c.answer, c.status
			err := f.api(t, time.Second).Call(ctx, call(c.id))
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("err %v, want %q", err, c.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "xoxb") {
				t.Fatalf("error %q holds a token", err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if !c.wantSeen {
				if len(f.calls) != 0 {
					t.Fatalf("Slack was called: %q", f.calls)
				}
				return
			}
			want := "/api/views.open Bearer " + testBotToken + ` application/json; charset=utf-8 {"trigger_id":"t"}`
			if len(f.calls) != 1 || f.calls[0] != want {
				t.Fatalf("calls %q, want %q", f.calls, want)
			}
		})
	}
}

// A Slack that does not answer costs the timeout, not Slack's 3 seconds.
func TestSlackAPITimeout(t *testing.T) {
	f := newFakeSlack(t)
	f.stall = make(chan struct{})
	defer close(f.stall)
	api := f.api(t, 200*time.Millisecond)
	start := time.Now()
	err := api.Call(context.Background(), &SlackCall{Method: "views.open", Integration: directory.Integration{ID: 13}, Body: []byte(`{}`)})
	if took := time.Since(start); err == nil || took > 2*time.Second {
		t.Fatalf("err %v after %v, want a timeout within the bound", err, took)
	}
}

// Only a base named with its port reaches loopback: the default rule is
// public addresses only, checked at dial time.
func TestSlackAPIAddressGuard(t *testing.T) {
	api, err := NewSlackAPI(SlackAPIOptions{Base: "https://127.0.0.1/api", Auth: botTokens{}})
	if err != nil {
		t.Fatal(err)
	}
	err = api.Call(context.Background(), &SlackCall{Method: "views.open", Integration: directory.Integration{ID: 13}, Body: []byte(`{}`)})
	if !errors.Is(err, httpx.ErrRefused) {
		t.Fatalf("err %v, want the address guard's refusal", err)
	}
	for _, bad := range []string{"http://slack.com/api", "slack.com/api", "https://u:p@slack.com/api", "https://slack.com/api?x=1"} {
		if _, err := NewSlackAPI(SlackAPIOptions{Base: bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
