package silocli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

// answer is what the fake admin API answers to one "METHOD /path?query".
type answer struct {
	status int
	body   string
}

// fakeAPI is an admin API on loopback that answers from a table and
// records what it was asked (method, request URI, body, Origin).
type fakeAPI struct {
	t       *testing.T
	answers map[string][]answer // repeated requests take the next answer
	mu      sync.Mutex
	got     []string
	bodies  []string
	origin  string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	key := r.Method + " " + r.URL.RequestURI()
	f.mu.Lock()
	f.got = append(f.got, key)
	f.bodies = append(f.bodies, string(b))
	f.origin = r.Header.Get("Origin")
	as := f.answers[key]
	var a answer
	if len(as) > 0 {
		a = as[0]
		if len(as) > 1 {
			f.answers[key] = as[1:]
		}
	}
	f.mu.Unlock()
	if a.status == 0 {
		a = answer{404, `{"error":"no such route (fake: ` + key + `)"}`}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

type fakeHost struct {
	url, secret string
	secretErr   error
	addrSeen    *string
}

func (h fakeHost) Admin(address, _, _ string) (Admin, error) {
	if h.addrSeen != nil {
		*h.addrSeen = address
	}
	return Admin{Client: http.DefaultClient, URL: h.url, Origin: h.url}, nil
}

func (h fakeHost) SubnetSecret(string, string) (string, error) { return h.secret, h.secretErr }

var now = time.Date(2026, 12, 2, 10, 15, 30, 0, time.UTC)

func run(t *testing.T, api *fakeAPI, host fakeHost, env map[string]string, args ...string) (int, string, error) {
	t.Helper()
	if api != nil {
		srv := httptest.NewServer(api)
		t.Cleanup(srv.Close)
		host.url = srv.URL
	}
	var out bytes.Buffer
	code, err := Run(context.Background(), args, Env{
		Stdout: &out, Host: host, Now: func() time.Time { return now },
		Getenv: func(k string) string { return env[k] },
	})
	return code, out.String(), err
}

const statusJSON = `{"mode":"control",
 "storage":{"engine":"sqlite","where":"/data/silo.db","ok":true,"ping_ms":0.12,"error":""},
 "regions":[{"name":"de","breaker":"open","consecutive_failures":5,"in_flight":0,"last_error":"region answered 503","last_error_at":"2026-12-02T10:11:00Z","paused":null},
            {"name":"us","breaker":"closed","consecutive_failures":0,"in_flight":2,"last_error":"","last_error_at":null,
             "paused":{"kind":"region","name":"us","paused_at":"2026-12-02T10:00:00Z","paused_by":"alice","reason":"restore"}}],
 "drainer":{"running":true,"owner":"edge-1:4711:9f3a","workers":32,"busy":3,"queued":0,"leases_held":5,"delivered_retention_seconds":0,"pauses_loaded_at":"2026-12-02T10:15:03Z","pauses_error":""},
 "rates":{"window_seconds":60,"captures_per_second":41.5,"deliveries_per_second":40.9},
 "directory":{"static_organizations":2,"static_integrations":1,"cache_entries":1834,"database":"","missing_tables":[],"error":""}}`

const mailboxesJSON = `{"mailboxes":[
 {"name":"github:us:42","region":"us","provider":"github","depth":3,"depth_capped":false,"oldest_age_seconds":192.5,"head_id":1040,"head_attempts":1,"head_last_status":503,"head_last_error":"region answered 503","next_attempt_at":"2026-12-02T10:16:18Z","paused":null},
 {"name":"jira:de:7","region":"de","provider":"jira","depth":10000,"depth_capped":true,"oldest_age_seconds":7300,"head_id":7,"head_attempts":0,"head_last_status":0,"head_last_error":"","next_attempt_at":"2026-12-02T10:15:30Z",
  "paused":{"kind":"region","name":"de","paused_at":"2026-12-02T10:00:00Z","paused_by":"","reason":""}}],
 "next":"bjpnaXRodWI6dXM6NDI","depth_cap":10000,"truncated":false}`

const deadLettersJSON = `{"dead_letters":[{"id":981,"mailbox":"jira:de:7","region":"de","provider":"jira","destination":"sentry_region","method":"POST","path":"/extensions/jira/issue-updated/?jwt=[masked]","date_added":"2026-12-02T10:15:00Z","attempts":1,"last_status":404,"last_error":"","body_size":2210,"region_answered":false,"reason":"dropped_404","dead_at":"2026-12-02T10:15:02Z"}],"next":null}`

const detailJSON = `{"id":981,"mailbox":"jira:de:7","region":"de","provider":"jira","destination":"sentry_region","method":"POST","path":"/extensions/jira/issue-updated/?jwt=[masked]","date_added":"2026-12-02T10:15:00Z","attempts":1,"last_status":404,"last_error":"","body_size":17,"region_answered":false,"reason":"dropped_404","dead_at":"2026-12-02T10:15:02Z",
 "headers":{"Content-Type":["application/json"],"Authorization":["[masked]"]},
 "body":{"size":17,"encoding":"text","preview":"{\"token\":\"[masked]\"}","truncated":false,"masked":true},
 "delivery_key":"d-1","callback_url":"","region_answer_size":null}`

// TestCommands runs each command against a fake admin API: the request it
// makes, the table it prints, its exit code.
func TestCommands(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		answers  map[string][]answer
		wantCode int
		wantReqs []string // exactly these requests, in order
		wantOut  []string // each line present in the output
		wantErr  string
	}{
		{
			name:     "status table",
			args:     []string{"status"},
			answers:  map[string][]answer{"GET /sentry_silo/status": {{200, statusJSON}}},
			wantReqs: []string{"GET /sentry_silo/status"},
			wantOut: []string{
				"mode       control",
				"storage    sqlite, /data/silo.db: ok (ping 0.12 ms)",
				"drainer    running as edge-1:4711:9f3a: 3 of 32 workers busy, 0 mailboxes queued, 5 leases held",
				"rates      41.5 captures/s, 40.9 deliveries/s (last 1m00s)",
				"directory  2 static organizations, 1 static integration, 1834 cached entries",
				"REGION  BREAKER  IN FLIGHT  FAILURES  PAUSED                     LAST ERROR",
				"de      open     0          5         -                          region answered 503 at 2026-12-02 10:11:00Z",
				"us      closed   2          0         region us paused: restore  -",
			},
		},
		{
			name:     "status json is the answer",
			args:     []string{"status", "--json"},
			answers:  map[string][]answer{"GET /sentry_silo/status": {{200, `{"mode":"control"}`}}},
			wantReqs: []string{"GET /sentry_silo/status"},
			wantOut:  []string{`  "mode": "control"`},
		},
		{
			name:     "mailboxes with filters and sort",
			args:     []string{"mailboxes", "--region", "us", "--sort", "depth", "--min-age", "10m", "--limit", "20"},
			answers:  map[string][]answer{"GET /sentry_silo/mailboxes?limit=20&min_age=10m&region=us&sort=depth": {{200, mailboxesJSON}}},
			wantReqs: []string{"GET /sentry_silo/mailboxes?limit=20&min_age=10m&region=us&sort=depth"},
			wantOut: []string{
				"MAILBOX       REGION  PROVIDER  DEPTH   OLDEST  ATTEMPTS  LAST STATUS  NEXT ATTEMPT  PAUSED            LAST ERROR",
				"github:us:42  us      github    3       3m12s   1         503          in 48s        -                 region answered 503",
				"jira:de:7     de      jira      10000+  2h01m   0         -            now           region de paused  -",
				"more: add --after bjpnaXRodWI6dXM6NDI",
			},
		},
		{
			name:     "no mailboxes",
			args:     []string{"mailboxes"},
			answers:  map[string][]answer{"GET /sentry_silo/mailboxes": {{200, `{"mailboxes":[],"next":null,"depth_cap":10000,"truncated":false}`}}},
			wantReqs: []string{"GET /sentry_silo/mailboxes"},
			wantOut:  []string{"no mailbox has pending payloads"},
		},
		{
			name: "one mailbox, its colons escaped",
			args: []string{"mailboxes", "github:us:42"},
			answers: map[string][]answer{"GET /sentry_silo/mailboxes/github:us:42": {{200, `{"mailbox":{"name":"github:us:42","region":"us","provider":"github","depth":1,"oldest_age_seconds":4,"head_id":1040,"head_attempts":0,"next_attempt_at":"2026-12-02T10:15:30Z","paused":null},
				"head":[{"id":1040,"mailbox":"github:us:42","destination":"sentry_region","method":"POST","path":"/extensions/github/webhook/","date_added":"2026-12-02T10:15:26Z","attempts":0,"next_attempt_at":"2026-12-02T10:15:30Z"}]}`}}},
			wantReqs: []string{"GET /sentry_silo/mailboxes/github:us:42"},
			wantOut: []string{
				"mailbox  github:us:42 (region us, provider github)",
				"depth    1, oldest 4s",
				"1040  github:us:42  2026-12-02 10:15:26Z  0         -            now           POST /extensions/github/webhook/  -",
			},
		},
		{
			name:     "dead letters filtered",
			args:     []string{"dead-letters", "list", "--region", "de", "--reason", "dropped_404", "--since", "1h"},
			answers:  map[string][]answer{"GET /sentry_silo/dead_letters?reason=dropped_404&region=de&since=2026-12-02T09%3A15%3A30Z": {{200, deadLettersJSON}}},
			wantReqs: []string{"GET /sentry_silo/dead_letters?reason=dropped_404&region=de&since=2026-12-02T09%3A15%3A30Z"},
			wantOut: []string{
				"ID   MAILBOX    REASON       LAST STATUS  ATTEMPTS  DEAD AT               REQUEST                                            LAST ERROR",
				"981  jira:de:7  dropped_404  404          1         2026-12-02 10:15:02Z  POST /extensions/jira/issue-updated/?jwt=[masked]  -",
			},
		},
		{
			name:     "dead letter shown, masked as answered",
			args:     []string{"dead-letters", "show", "981"},
			answers:  map[string][]answer{"GET /sentry_silo/dead_letters/981": {{200, detailJSON}}},
			wantReqs: []string{"GET /sentry_silo/dead_letters/981"},
			wantOut: []string{
				"reason        dropped_404 at 2026-12-02 10:15:02Z, after 1 attempt; last status 404",
				"  Authorization: [masked]",
				"body (17 bytes, text, secret fields masked):",
				`{"token":"[masked]"}`,
			},
		},
		{
			name:     "replay one, flag after the id",
			args:     []string{"dead-letters", "replay", "981", "--json"},
			answers:  map[string][]answer{"POST /sentry_silo/dead_letters/981/replay": {{200, `{"replayed":981,"payload_id":5012}`}}},
			wantReqs: []string{"POST /sentry_silo/dead_letters/981/replay"},
			wantOut:  []string{`  "payload_id": 5012`},
		},
		{
			name: "bulk replay repeats while more",
			args: []string{"dead-letters", "replay", "--mailbox", "jira:de:7"},
			answers: map[string][]answer{"POST /sentry_silo/dead_letters/replay?mailbox=jira%3Ade%3A7": {
				{200, `{"replayed":50000,"batches":100,"more":true}`}, {200, `{"replayed":312,"batches":1,"more":false}`}}},
			wantReqs: []string{"POST /sentry_silo/dead_letters/replay?mailbox=jira%3Ade%3A7", "POST /sentry_silo/dead_letters/replay?mailbox=jira%3Ade%3A7"},
			wantOut:  []string{"50312 dead letters replayed (101 batches)"},
		},
		{
			name:     "bulk delete of all",
			args:     []string{"dead-letters", "delete", "--all"},
			answers:  map[string][]answer{"DELETE /sentry_silo/dead_letters?all=true": {{200, `{"deleted":2,"batches":1,"more":false}`}}},
			wantReqs: []string{"DELETE /sentry_silo/dead_letters?all=true"},
			wantOut:  []string{"2 dead letters deleted (1 batch)"},
		},
		{
			name:     "delete one",
			args:     []string{"dead-letters", "delete", "981"},
			answers:  map[string][]answer{"DELETE /sentry_silo/dead_letters/981": {{200, `{"deleted":1}`}}},
			wantReqs: []string{"DELETE /sentry_silo/dead_letters/981"},
			wantOut:  []string{"dead letter 981 deleted"},
		},
		{
			name:     "pause a region, by $USER",
			args:     []string{"pause", "region", "us", "--reason", "restore"},
			answers:  map[string][]answer{"POST /sentry_silo/regions/us/pause": {{200, `{"pause":{"kind":"region","name":"us","paused_at":"2026-12-02T10:00:00Z","paused_by":"alice","reason":"restore"},"created":true}`}}},
			wantReqs: []string{"POST /sentry_silo/regions/us/pause"},
			wantOut:  []string{"region us paused: nothing is delivered to it until `caddy silo resume region us`"},
		},
		{
			name:     "pause twice says since when",
			args:     []string{"pause", "mailbox", "github:us:42"},
			answers:  map[string][]answer{"POST /sentry_silo/mailboxes/github:us:42/pause": {{200, `{"pause":{"kind":"mailbox","name":"github:us:42","paused_at":"2026-12-02T10:00:00Z","paused_by":"bob","reason":""},"created":false}`}}},
			wantReqs: []string{"POST /sentry_silo/mailboxes/github:us:42/pause"},
			wantOut:  []string{"mailbox github:us:42 was paused already, since 2026-12-02 10:00:00Z by bob"},
		},
		{
			name:     "resume",
			args:     []string{"resume", "region", "us"},
			answers:  map[string][]answer{"POST /sentry_silo/regions/us/resume": {{200, `{"kind":"region","name":"us","resumed":true}`}}},
			wantReqs: []string{"POST /sentry_silo/regions/us/resume"},
			wantOut:  []string{"region us resumed"},
		},
		{
			name:     "pauses",
			args:     []string{"pauses"},
			answers:  map[string][]answer{"GET /sentry_silo/pauses": {{200, `{"pauses":[{"kind":"region","name":"us","paused_at":"2026-12-02T10:00:00Z","paused_by":"alice","reason":"restore"}]}`}}},
			wantReqs: []string{"GET /sentry_silo/pauses"},
			wantOut:  []string{"region  us    2026-12-02 10:00:00Z  alice  restore"},
		},
		{
			name:     "retry",
			args:     []string{"retry", "jira:de:7"},
			answers:  map[string][]answer{"POST /sentry_silo/mailboxes/jira:de:7/retry": {{200, `{"mailbox":"jira:de:7","retried":true}`}}},
			wantReqs: []string{"POST /sentry_silo/mailboxes/jira:de:7/retry"},
			wantOut:  []string{"mailbox jira:de:7: its head is due now"},
		},
		// The API's errors: exit 1, the JSON message, nothing on stdout.
		{
			name:     "not found",
			args:     []string{"dead-letters", "show", "5"},
			answers:  map[string][]answer{"GET /sentry_silo/dead_letters/5": {{404, `{"error":"no dead letter 5"}`}}},
			wantCode: ExitAPI,
			wantReqs: []string{"GET /sentry_silo/dead_letters/5"},
			wantErr:  "GET /sentry_silo/dead_letters/5: 404 Not Found: no dead letter 5",
		},
		{
			name:     "storage down",
			args:     []string{"mailboxes"},
			answers:  map[string][]answer{"GET /sentry_silo/mailboxes": {{503, `{"error":"storage unreachable"}`}}},
			wantCode: ExitAPI,
			wantReqs: []string{"GET /sentry_silo/mailboxes"},
			wantErr:  "503 Service Unavailable: storage unreachable",
		},
		{
			name:     "an answer that is not JSON",
			args:     []string{"status"},
			answers:  map[string][]answer{"GET /sentry_silo/status": {{502, "bad gateway"}}},
			wantCode: ExitAPI,
			wantReqs: []string{"GET /sentry_silo/status"},
			wantErr:  "502 Bad Gateway: bad gateway",
		},
		{
			name: "bulk failure says how many were done",
			args: []string{"dead-letters", "replay", "--region", "us"},
			answers: map[string][]answer{"POST /sentry_silo/dead_letters/replay?region=us": {
				{200, `{"replayed":500,"batches":1,"more":true}`}, {503, `{"error":"storage unreachable"}`}}},
			wantCode: ExitAPI,
			wantReqs: []string{"POST /sentry_silo/dead_letters/replay?region=us", "POST /sentry_silo/dead_letters/replay?region=us"},
			wantErr:  "(500 dead letters replayed before the failure)",
		},
		// Usage errors: exit 2, and no request at all.
		{name: "unknown command", args: []string{"mailbox"}, wantCode: ExitUsage, wantErr: `unknown command "mailbox"`},
		{name: "unknown dead-letters verb", args: []string{"dead-letters", "purge"}, wantCode: ExitUsage, wantErr: "unknown command"},
		{name: "unknown flag", args: []string{"mailboxes", "--mailbox", "x"}, wantCode: ExitUsage, wantErr: "flag provided but not defined: -mailbox"},
		{name: "bad sort", args: []string{"mailboxes", "--sort", "size"}, wantCode: ExitUsage, wantErr: "name, depth or oldest"},
		{name: "limit out of range", args: []string{"dead-letters", "list", "--limit", "5000"}, wantCode: ExitUsage, wantErr: "from 1 to 1000"},
		{name: "bad since", args: []string{"dead-letters", "list", "--since", "yesterday"}, wantCode: ExitUsage, wantErr: "RFC 3339"},
		{name: "bad id", args: []string{"dead-letters", "show", "abc"}, wantCode: ExitUsage, wantErr: "not a positive integer"},
		{name: "missing id", args: []string{"dead-letters", "show"}, wantCode: ExitUsage, wantErr: "takes <id>"},
		{name: "bulk without a filter", args: []string{"dead-letters", "replay"}, wantCode: ExitUsage, wantErr: "give filters"},
		{name: "id and filters", args: []string{"dead-letters", "delete", "5", "--region", "us"}, wantCode: ExitUsage, wantErr: "not both"},
		{name: "pause what", args: []string{"pause", "us"}, wantCode: ExitUsage, wantErr: "region <name> or mailbox <name>"},
		{name: "listing flags on one mailbox", args: []string{"mailboxes", "m", "--sort", "depth"}, wantCode: ExitUsage, wantErr: "apply to the listing"},
		{name: "help", args: []string{"help"}, wantOut: []string{"Exit codes: 0 ok, 1 the admin API answered an error, 2 bad command line,"}},
		{name: "a command's help", args: []string{"dead-letters", "list", "--help"}, wantOut: []string{"Usage: caddy silo dead-letters list  [flags]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := &fakeAPI{t: t, answers: tc.answers}
			code, out, err := run(t, api, fakeHost{}, map[string]string{"USER": "alice"}, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d (error: %v)", code, tc.wantCode, err)
			}
			if (err == nil) != (tc.wantCode == ExitOK) {
				t.Errorf("error %v with exit code %d", err, code)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("error %v, want it to contain %q", err, tc.wantErr)
			}
			if tc.wantCode != ExitOK && out != "" {
				t.Errorf("a failure printed on stdout:\n%s", out)
			}
			if strings.Join(api.got, "\n") != strings.Join(tc.wantReqs, "\n") {
				t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(api.got, "\n"), strings.Join(tc.wantReqs, "\n"))
			}
			for _, want := range tc.wantOut {
				if !containsLine(out, want) {
					t.Errorf("output lacks the line %q:\n%s", want, out)
				}
			}
		})
	}
}

// containsLine compares lines with their trailing blanks trimmed:
// tabwriter pads the last column.
func containsLine(out, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimRight(l, " ") == strings.TrimRight(want, " ") {
			return true
		}
	}
	return false
}

func TestPauseSendsReasonAndUser(t *testing.T) {
	api := &fakeAPI{t: t, answers: map[string][]answer{"POST /sentry_silo/regions/us/pause": {{200, `{"pause":{"kind":"region","name":"us"},"created":true}`}}}}
	if code, _, err := run(t, api, fakeHost{}, map[string]string{"USER": "alice"}, "pause", "region", "us", "--reason", "db restore"); code != 0 {
		t.Fatal(code, err)
	}
	if got, want := api.bodies[0], `{"by":"alice","reason":"db restore"}`; got != want {
		t.Errorf("body %s, want %s", got, want)
	}
	if api.origin == "" {
		t.Error("no Origin header: the admin endpoint checks it on TCP")
	}
}

func TestAddressFlagReachesTheHost(t *testing.T) {
	for _, args := range [][]string{
		{"pauses", "--address", "localhost:2999"},
		{"--address", "localhost:2999", "pauses"},
		{"--address=localhost:2999", "--json", "pauses"},
	} {
		var seen string
		api := &fakeAPI{t: t, answers: map[string][]answer{"GET /sentry_silo/pauses": {{200, `{"pauses":[]}`}}}}
		if code, _, err := run(t, api, fakeHost{addrSeen: &seen}, nil, args...); code != 0 {
			t.Fatal(args, code, err)
		}
		if seen != "localhost:2999" {
			t.Errorf("%q: the host was asked for %q", args, seen)
		}
	}
}

func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	code, out, err := run(t, nil, fakeHost{url: url}, nil, "status")
	if code != ExitUnreachable || err == nil || !strings.Contains(err.Error(), "cannot reach the admin API at "+url) || out != "" {
		t.Errorf("code %d, error %v, output %q", code, err, out)
	}
}

// TestSign checks the signed call against the subnet package's own
// verification, and that the secret is printed nowhere.
func TestSign(t *testing.T) {
	const secret = "s3cret-subnet"
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body := `{"content":"it's here"}`
	for _, tc := range []struct {
		name string
		host fakeHost
		env  map[string]string
		args []string
	}{
		{"secret from the config", fakeHost{secret: secret}, nil, nil},
		{"secret from the environment", fakeHost{secretErr: errors.New("must not be read")}, map[string]string{SecretEnv: secret}, nil},
		{"secret from a file", fakeHost{secretErr: errors.New("must not be read")}, nil, []string{"--secret-file", secretFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"sign", "-X", "POST", "--org-integration", "21", "--base-url", "http://127.0.0.1:8012/api/v10",
				"-d", body, "--control", "http://localhost:8000", "--json", "http://127.0.0.1:8012/api/v10/channels/1/messages?wait=true"}, tc.args...)
			code, out, err := run(t, nil, tc.host, tc.env, args...)
			if code != 0 {
				t.Fatal(code, err)
			}
			if strings.Contains(out, secret) {
				t.Fatalf("the secret is in the output:\n%s", out)
			}
			var got struct {
				Method, URL string
				Headers     http.Header
				Body        string
			}
			if err := jsonUnmarshal(out, &got); err != nil {
				t.Fatal(err, out)
			}
			h := got.Headers
			if got.Method != "POST" || got.URL != "http://localhost:8000"+subnet.ProxyPath || got.Body != body {
				t.Errorf("request %s %s %q", got.Method, got.URL, got.Body)
			}
			if h.Get(subnet.HeaderPath) != "channels/1/messages?wait=true" || h.Get(subnet.HeaderBaseURL) != "http://127.0.0.1:8012/api/v10" ||
				h.Get(subnet.HeaderOrganizationIntegration) != "21" || h.Get("Content-Type") != "application/json" {
				t.Errorf("headers %v", h)
			}
			if !subnet.Verify(secret, h.Get(subnet.HeaderBaseURL), h.Get(subnet.HeaderPath), "21", []byte(body), h.Get(subnet.HeaderSignature)) {
				t.Errorf("signature %q does not verify", h.Get(subnet.HeaderSignature))
			}
		})
	}
}

// TestSignCurlQuoting checks the quoting of the printed curl command: the
// signature covers the body byte for byte.
func TestSignCurlQuoting(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"GET", "GET"},
		{"http://localhost:8000/api/0/internal/integration-proxy/", "http://localhost:8000/api/0/internal/integration-proxy/"},
		{`{"a":"it's"}`, `'{"a":"it'\''s"}'`},
		{"X-Sentry-Subnet-Path: a b", `'X-Sentry-Subnet-Path: a b'`},
		{"", "''"},
	} {
		if got := shellQuote(tc.in); got != tc.want {
			t.Errorf("shellQuote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestSignUsage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		host    fakeHost
		args    []string
		wantErr string
	}{
		{"no secret anywhere", fakeHost{}, []string{"--org-integration", "1", "https://discord.com/api/v10/x"}, "no subnet secret"},
		{"config unreadable", fakeHost{secretErr: errors.New("subnet_secret: {env.X}: not set")}, []string{"--org-integration", "1", "https://discord.com/x"}, "not set"},
		{"no org integration", fakeHost{secret: "s"}, []string{"https://discord.com/x"}, "--org-integration <id> is required"},
		{"relative url", fakeHost{secret: "s"}, []string{"--org-integration", "1", "/x"}, "absolute http(s) URL"},
		{"bad header", fakeHost{secret: "s"}, []string{"--org-integration", "1", "-H", "nocolon", "https://discord.com/x"}, `write it "Name: value"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, err := run(t, nil, tc.host, nil, append([]string{"sign"}, tc.args...)...)
			if code != ExitUsage || err == nil || !strings.Contains(err.Error(), tc.wantErr) || out != "" {
				t.Errorf("code %d, error %v, output %q; want exit 2 and %q", code, err, out, tc.wantErr)
			}
		})
	}
}

func TestAge(t *testing.T) {
	for _, tc := range []struct {
		s    float64
		want string
	}{{0.25, "250ms"}, {42, "42s"}, {185, "3m05s"}, {7440, "2h04m"}, {3*86400 + 4*3600, "3d04h"}, {-1, "0ms"}} {
		if got := age(tc.s); got != tc.want {
			t.Errorf("age(%v) = %s, want %s", tc.s, got, tc.want)
		}
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
