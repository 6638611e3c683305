package integration_tests

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

// giveUpBody is the GitHub push sent with delivery id: every body is
// different and tells whose it is, so a stored row can be checked against
// what its sender sent.
func giveUpBody(delivery string) []byte {
	return fmt.Appendf(nil, `{"installation":{"id":555},"delivery":%q,"head_commit":{"message":"%s"}}`,
		delivery, strings.Repeat(delivery[len(delivery)-1:], 1200))
}

// holdInserts makes every insert into silo_webhook_payload wait until the
// returned function is called: a lock on the table (PostgreSQL) or the
// write lock of the file (SQLite), held by a connection of the test's own.
func holdInserts(t *testing.T, s *captureSetup) (release func()) {
	t.Helper()
	ctx := context.Background()
	db := s.db
	if !s.postgres {
		path := strings.TrimPrefix(s.storage, "sqlite ")
		var err error
		db, err = sql.Open("sqlite", path+"?_txlock=immediate&_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.postgres {
		if _, err := tx.ExecContext(ctx, `LOCK TABLE silo_webhook_payload IN SHARE MODE`); err != nil {
			t.Fatal(err)
		}
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := tx.Rollback(); err != nil {
				t.Errorf("releasing the hold: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// TestCaptureGiveUpsKeepTheirBytes: GitHub senders that give up after
// 300 ms while the database is slow, next to patient ones. No row may ever
// hold bytes other than the ones its sender sent, and every 202 has its
// rows. The inserts are held until 300 senders have given up, then
// released while the impatient senders keep sending, so the buffers of
// the requests that gave up are reused while their rows are still queued
// or being committed.
func TestCaptureGiveUpsKeepTheirBytes(t *testing.T) {
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
			if tc.postgres {
				opts.dsn = pgtest.DSN(t)
			}
			s := newCaptureSetup(t, opts)
			checkGiveUps(t, s)
		})
	}
}

type giveUpResult struct {
	delivery string
	status   int // 0: the sender gave up
}

func checkGiveUps(t *testing.T, s *captureSetup) {
	const (
		patientWorkers   = 32
		impatientWorkers = 96
		giveUpsHeld      = 300 // give-ups before the inserts are released
		sentAfter        = 300 // 202s of impatient senders after the release
	)
	send := func(client *http.Client, delivery string) giveUpResult {
		req, _ := http.NewRequest(http.MethodPost, s.base+"/extensions/github/webhook/", bytes.NewReader(giveUpBody(delivery)))
		req.Header = githubPush(delivery)
		resp, err := client.Do(req)
		if err != nil {
			return giveUpResult{delivery: delivery}
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return giveUpResult{delivery: delivery, status: resp.StatusCode}
	}
	patient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: patientWorkers}}
	impatient := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{MaxIdleConnsPerHost: impatientWorkers}}
	defer patient.CloseIdleConnections()
	defer impatient.CloseIdleConnections()

	release := holdInserts(t, s)
	var (
		mu       sync.Mutex
		results  []giveUpResult
		giveUps  atomic.Int64
		after    atomic.Int64
		released atomic.Bool
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	record := func(r giveUpResult) {
		mu.Lock()
		results = append(results, r)
		mu.Unlock()
	}
	for w := range patientWorkers {
		wg.Go(func() {
			// One delivery while the inserts are held, one after.
			for i := range 2 {
				record(send(patient, fmt.Sprintf("patient-%d-%d", w, i)))
			}
		})
	}
	for w := range impatientWorkers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := send(impatient, fmt.Sprintf("impatient-%d-%d", w, i))
				record(r)
				switch {
				case r.status == 0 && !released.Load():
					giveUps.Add(1)
				case r.status == http.StatusAccepted && released.Load():
					after.Add(1)
				}
			}
		})
	}
	waitFor(t, fmt.Sprintf("%d senders to give up", giveUpsHeld), 60*time.Second, func() bool { return giveUps.Load() >= giveUpsHeld })
	released.Store(true)
	release()
	waitFor(t, fmt.Sprintf("%d captures after the release", sentAfter), 60*time.Second, func() bool { return after.Load() >= sentAfter })
	close(stop)
	wg.Wait()

	status := map[string]int{}
	for _, r := range results {
		status[r.delivery] = r.status
	}
	rows := s.rows(t)
	stored := map[string]int{}
	wrong, gaveUpStored := 0, 0
	for _, r := range rows {
		key := r.deliveryKey.String
		st, sent := status[key]
		if !sent {
			t.Errorf("row %d has delivery %q, which nobody sent", r.id, key)
			continue
		}
		stored[key]++
		if st == 0 && stored[key] == 1 {
			gaveUpStored++
		}
		if !bytes.Equal(r.body, giveUpBody(key)) || !strings.Contains(r.headers, `"X-Github-Delivery":["`+key+`"]`) {
			wrong++
			if wrong <= 3 {
				t.Errorf("row %d (%s, %s) holds a body or headers its sender did not send: %.80q", r.id, key, r.mailbox, r.body)
			}
		}
	}
	accepted, gaveUp := 0, 0
	for key, st := range status {
		switch st {
		case 0:
			gaveUp++
		case http.StatusAccepted:
			accepted++
			if stored[key] != 2 {
				t.Errorf("%s got a 202 and has %d rows, want one per region", key, stored[key])
			}
		case http.StatusServiceUnavailable:
			// Allowed: not stored, and the provider retries.
		default:
			t.Errorf("%s: %d", key, st)
		}
		if stored[key] > 2 {
			t.Errorf("%s is stored %d times", key, stored[key])
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d stored rows hold bytes their sender did not send", wrong, len(rows))
	}
	t.Logf("%d deliveries: %d accepted, %d given up (%d of those stored anyway); %d rows, %d wrong",
		len(status), accepted, gaveUp, gaveUpStored, len(rows), wrong)
}
