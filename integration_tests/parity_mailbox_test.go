package integration_tests

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestOldMailboxNamesKeepDraining: rows stored under the mailbox names of
// earlier versions (ours without the event type, bucketed or not, and
// Sentry's legacy provider:identifier) are delivered once each, next to a
// webhook captured now under the newest name
// (github:us:1:42:push). An upgrade strands nothing.
func TestOldMailboxNamesKeepDraining(t *testing.T) {
	s := newDrainSetup(t)
	a := s.start(t, "")
	s.seed(t, 1)
	old := []struct{ mailbox, delivery string }{
		{"github:us:1", "old-unsplit"},
		{"github:us:1:42", "old-bucketed"},
		{"github:1", "sentry-legacy"},
	}
	for i, o := range old {
		headers := fmt.Sprintf(`{"Content-Type":["application/json"],"X-Github-Delivery":[%q],"X-Github-Event":["push"]}`, o.delivery)
		body := fmt.Sprintf(`{"installation":{"id":5001},"repository":{"id":42},"delivery":%q}`, o.delivery)
		mustExec(t, s.db, fmt.Sprintf(`INSERT INTO silo_webhook_payload (mailbox_name, provider, region_name, integration_id, date_added,
			request_method, request_path, request_headers, request_body, delivery_key)
			VALUES ('%s', 'github', 'us', 1, %d, 'POST', '/extensions/github/webhook/', '%s', CAST('%s' AS BLOB), '%s')`,
			o.mailbox, time.Now().Add(time.Duration(i-10)*time.Second).UnixMicro(), headers, body, o.delivery))
	}
	// The same integration and repository, captured now.
	req, _ := http.NewRequest(http.MethodPost, a.base+"/extensions/github/webhook/",
		strings.NewReader(`{"installation":{"id":5001},"repository":{"id":42},"delivery":"new-1"}`))
	req.Header = hdrs("Content-Type", "application/json", "X-GitHub-Event", "push", "X-GitHub-Delivery", "new-1")
	resp, err := drainClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("capture: %d\n%s", resp.StatusCode, a.c.Logs())
	}
	var mailboxes []string
	rows, err := s.db.Query(`SELECT mailbox_name FROM silo_webhook_payload ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			t.Fatal(err)
		}
		mailboxes = append(mailboxes, m)
	}
	rows.Close()
	if want := "github:us:1:42:push"; !slices.Contains(mailboxes, want) {
		// The drainer may already have delivered it: only a row still
		// there under another name would be wrong.
		for _, m := range mailboxes {
			if m != "github:us:1" && m != "github:us:1:42" && m != "github:1" {
				t.Errorf("captured into %s, want %s", m, want)
			}
		}
	}

	waitFor(t, "every row delivered", 30*time.Second, func() bool { d, _, _ := s.us.delivered(); return d == len(old)+1 })
	waitFor(t, "mailboxes empty", 10*time.Second, func() bool { return s.pending(t) == 0 })
	s.us.mu.Lock()
	defer s.us.mu.Unlock()
	for _, id := range []string{"old-unsplit", "old-bucketed", "sentry-legacy", "new-1"} {
		if n := s.us.counts[id]; n != 1 {
			t.Errorf("%s delivered %d times, want once", id, n)
		}
	}
	if n := dbCount(t, s, `SELECT count(*) FROM silo_dead_letter`); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

func dbCount(t *testing.T, s *drainSetup, query string) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
