package drain

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// lateCommitStore hides one row from NextPayloads until reveal is
// closed, as PostgreSQL hides a row whose id was taken by an insert that
// has not committed yet: ids follow the inserts, visibility the commits,
// and two group commits (two flushers, two instances) finish in either
// order.
type lateCommitStore struct {
	*memStore
	hidden int64
	reveal chan struct{}
}

func (s *lateCommitStore) NextPayloads(ctx context.Context, mailbox string, afterID int64, now time.Time, dueOnly bool, limit int) ([]store.Payload, error) {
	rows, err := s.memStore.NextPayloads(ctx, mailbox, afterID, now, dueOnly, limit+1)
	select {
	case <-s.reveal:
	default:
		rows = slices.DeleteFunc(rows, func(p store.Payload) bool { return p.ID == s.hidden })
	}
	if len(rows) > limit {
		rows = rows[:limit]
	}
	return rows, err
}

// A row that commits late, after a full page of its mailbox was read, is
// delivered before the rows stored after its commit: a turn must not step
// past it with its cursor. Before, the turn read on from the last id it
// had seen and the late row waited for the next turn, behind every row
// stored after it had been acknowledged.
func TestDrainerReadsRowsThatCommitLate(t *testing.T) {
	mem := newMemStore(nil)
	st := &lateCommitStore{memStore: mem, reveal: make(chan struct{})}
	f := newFixture(t, st)
	ids := f.insert("jira", "us", "1", fetchBatch+1) // 1#0 .. 1#100
	st.hidden = ids[1]

	// Hold the first delivery until the late row has committed and more
	// rows were stored after it.
	var once sync.Once
	release := make(chan struct{})
	f.us.set(func(w http.ResponseWriter, r *http.Request, body []byte) {
		once.Do(func() { <-release })
		w.WriteHeader(http.StatusOK)
	})
	f.run(f.newDrainer(f.fastConfig()))
	waitFor(t, "the first delivery", 30*time.Second, func() bool { return len(f.us.bodies()) == 1 })
	close(st.reveal) // 1#1 commits: acknowledged from here on
	var later []store.NewPayload
	for i := range fetchBatch {
		p := newPayload("jira", "us", "1", i)
		p.Body = []byte(fmt.Sprintf("later#%d", i))
		later = append(later, p)
	}
	if _, err := mem.InsertPayloads(context.Background(), later); err != nil {
		t.Fatal(err)
	}
	close(release)
	waitFor(t, "every delivery", 30*time.Second, func() bool { return f.pending() == 0 })

	bodies := f.us.bodies()
	late, first := slices.Index(bodies, "1#1"), slices.Index(bodies, "later#0")
	if late < 0 || first < 0 || late > first {
		t.Fatalf("the late row was delivered at position %d, the first row stored after its commit at %d", late, first)
	}
}
