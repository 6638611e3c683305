package integration_tests

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

// TestCaptureDuplicateStorm: a provider re-sending deliveries that are
// still in flight, from many connections at once. Every delivery id is
// sent twice, by two workers at about the same moment; both get their
// 202, each delivery is stored once per region, and on PostgreSQL the
// group commits carrying the same keys never deadlock (the server logs
// every deadlock it breaks).
func TestCaptureDuplicateStorm(t *testing.T) {
	tests := []struct {
		name     string
		postgres bool
	}{
		{"postgres", true},
		{"sqlite", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := captureOptions{}
			var cluster *pgtest.Cluster
			if tc.postgres {
				cluster = pgtest.NewCluster(t, pgtest.Options{})
				opts.dsn = cluster.DSN(t)
			}
			s := newCaptureSetup(t, opts)
			checkDuplicateStorm(t, s)
			if cluster != nil {
				log, err := os.ReadFile(cluster.LogPath())
				if err != nil {
					t.Fatal(err)
				}
				if n := strings.Count(string(log), "deadlock detected"); n > 0 {
					t.Errorf("PostgreSQL broke %d deadlocks:\n%s", n, grepLines(string(log), "deadlock"))
				}
			}
		})
	}
}

func checkDuplicateStorm(t *testing.T, s *captureSetup) {
	const workers, deliveries = 32, 2000
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	var next atomic.Int64
	var mu sync.Mutex
	status := map[string][]int{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= 2*deliveries {
					return
				}
				id := fmt.Sprintf("storm-%d", i/2) // sent by this worker and the next one
				body := []byte(fmt.Sprintf(`{"installation":{"id":555},"delivery":%q}`, id))
				req, _ := http.NewRequest(http.MethodPost, s.base+"/extensions/github/webhook/", bytes.NewReader(body))
				req.Header = githubPush(id)
				code := 0
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				status[id] = append(status[id], code)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for id, codes := range status {
		if len(codes) != 2 || codes[0] != http.StatusAccepted || codes[1] != http.StatusAccepted {
			t.Errorf("%s: answers %v, want two 202", id, codes)
		}
	}
	stored := map[string]int{}
	for _, r := range s.rows(t) {
		stored[r.deliveryKey.String+"@"+r.region]++
	}
	for i := range deliveries {
		for _, region := range []string{"us", "de"} {
			if k := fmt.Sprintf("storm-%d@%s", i, region); stored[k] != 1 {
				t.Errorf("%s stored %d times, want once", k, stored[k])
			}
		}
	}
	if len(stored) != 2*deliveries {
		t.Errorf("%d (delivery, region) pairs stored, want %d", len(stored), 2*deliveries)
	}
}
