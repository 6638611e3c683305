package drain

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// lossyStore fails the records of what a region received, as a failover
// between the region's answer and the COMMIT does: while down, the write
// does not happen and the store is unavailable; with lostCommit, the write
// happens but its answer is lost.
type lossyStore struct {
	testStore
	down       atomic.Bool
	lostCommit bool
	failed     atomic.Int64
}

func (s *lossyStore) fail(write func() error) error {
	if !s.down.Load() {
		return write()
	}
	s.failed.Add(1)
	if s.lostCommit {
		_ = write()
	}
	return fmt.Errorf("postgres delete payload: %w: unexpected EOF", store.ErrUnavailable)
}

func (s *lossyStore) DeletePayload(ctx context.Context, id int64) error {
	return s.fail(func() error { return s.testStore.DeletePayload(ctx, id) })
}

func (s *lossyStore) DeadLetterPayload(ctx context.Context, id int64, reason string, status int, lastErr string, now time.Time) error {
	return s.fail(func() error { return s.testStore.DeadLetterPayload(ctx, id, reason, status, lastErr, now) })
}

// A row the region took is never sent again because its record did not
// reach the database: the record is retried until it does, whether the
// write was lost or only its answer.
func TestDrainerRecordsWhatTheRegionTook(t *testing.T) {
	for _, tc := range []struct {
		name       string
		lostCommit bool
		status     int // the region's answer
	}{
		{"delete lost", false, http.StatusOK},
		{"delete answer lost", true, http.StatusOK},
		{"dead letter lost", false, http.StatusNotFound},
		{"dead letter answer lost", true, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &lossyStore{testStore: newMemStore(nil), lostCommit: tc.lostCommit}
			f := newFixture(t, st)
			// The database goes away as the region answers each of the
			// first three rows, and comes back 300ms later.
			var answered atomic.Int64
			f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
				if answered.Add(1) <= 3 {
					st.down.Store(true)
					time.AfterFunc(300*time.Millisecond, func() { st.down.Store(false) })
				}
				w.WriteHeader(tc.status)
			})
			f.insert("jira", "us", "1", 5)
			f.run(f.newDrainer(f.fastConfig()))
			waitFor(t, "the mailbox to empty", 30*time.Second, func() bool { return f.pending() == 0 })
			sent := map[string]int{}
			for _, b := range f.us.bodies() {
				sent[b]++
			}
			for i := 0; i < 5; i++ {
				if n := sent[fmt.Sprintf("1#%d", i)]; n != 1 {
					t.Errorf("row 1#%d sent %d times, want once (records failed %d times)", i, n, st.failed.Load())
				}
			}
			if st.failed.Load() == 0 {
				t.Fatal("no record failed: the test tested nothing")
			}
			if tc.status == http.StatusNotFound && len(f.deadLetters()) != 5 {
				t.Errorf("%d dead letters, want 5", len(f.deadLetters()))
			}
		})
	}
}
