package drain

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// request_timeout bounds a delivery's whole exchange, not each read: a
// region that never answers, that trickles its header lines, or that
// answers 200 and then trickles its body for 30 s holds the request no
// longer than request_timeout. (Sentry's client has per-read timeouts,
// which a trickling region outruns, hence its separate 26 s bound on
// a request in flight; here the context deadline is that bound.) The
// status line decides the outcome: a 200 whose body was cut is delivered,
// a timeout before the status is retried.
func TestRequestTimeoutBoundsTheWholeExchange(t *testing.T) {
	const trickle = 30 * time.Second // how long each stall would go on
	tests := []struct {
		name          string
		stall         func(w http.ResponseWriter, r *http.Request) // returns when the client has gone
		wantDelivered bool
	}{
		{"no answer", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(trickle):
			}
		}, false},
		{"header lines trickle", func(w http.ResponseWriter, r *http.Request) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			_, _ = buf.WriteString("HTTP/1.1 200 OK\r\n")
			pace := time.NewTicker(20 * time.Millisecond) // the trickle's pace
			defer pace.Stop()
			for end := time.Now().Add(trickle); time.Now().Before(end); <-pace.C {
				if _, err := buf.WriteString("X-Trickle: a\r\n"); err != nil {
					return
				}
				if buf.Flush() != nil {
					return
				}
			}
		}, false},
		{"200, then the body trickles", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			fl := w.(http.Flusher)
			for end := time.Now().Add(trickle); time.Now().Before(end); {
				if _, err := w.Write([]byte("a")); err != nil {
					return
				}
				fl.Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, newMemStore(nil))
			lasted := make(chan time.Duration, 1)
			f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
				t0 := time.Now()
				tc.stall(w, r)
				select {
				case lasted <- time.Since(t0):
				default: // a retry of the same row
				}
			})
			ids := f.insert("jira", "us", "1", 1)
			cfg := f.fastConfig()
			cfg.RequestTimeout = 300 * time.Millisecond
			cfg.BreakerFailures = 1000
			f.run(f.newDrainer(cfg))
			var d time.Duration
			select {
			case d = <-lasted:
			case <-time.After(trickle):
				t.Fatal("the first request outlived the stall")
			}
			// The bound is the behaviour: request_timeout, with a generous
			// second for a loaded machine, against a 30 s stall.
			if d > cfg.RequestTimeout+time.Second {
				t.Fatalf("the request was held %v, request_timeout is %v", d, cfg.RequestTimeout)
			}
			if tc.wantDelivered {
				waitFor(t, "delivered", 30*time.Second, func() bool { return f.pending() == 0 })
				return
			}
			name := mailboxName("jira", "us", "1")
			waitFor(t, "the timeout recorded", 30*time.Second, func() bool {
				p, ok := f.payload(name, ids[0])
				return ok && p.LastError != ""
			})
			if p, _ := f.payload(name, ids[0]); !strings.Contains(p.LastError, "timeout") {
				t.Fatalf("last error %q, want a timeout", p.LastError)
			}
		})
	}
}
