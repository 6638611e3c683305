package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// holdPayloadInserts takes a lock on silo_webhook_payload that every
// INSERT waits for, waits until waiters inserts are waiting, and returns
// the function that lets them all go at once.
func holdPayloadInserts(t *testing.T, pool *pgxpool.Pool) (waitFor func(waiters int), release func()) {
	t.Helper()
	ctx := testCtx(t)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE silo_webhook_payload IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	waitFor = func(waiters int) {
		t.Helper()
		var n int
		if err := harness.Poll(10*time.Second, func() bool {
			err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
				WHERE c.relname = 'silo_webhook_payload' AND NOT l.granted`).Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			return n >= waiters
		}); err != nil {
			t.Fatalf("%d inserts waiting on the lock, want %d: %v", n, waiters, err)
		}
	}
	release = func() {
		if err := tx.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return waitFor, release
}

// TestPostgresCrossBatchDuplicatesDoNotDeadlock: two group commits that
// carry the same delivery keys in opposite orders (a provider retrying
// deliveries that are still in flight) each wait on the other's
// unique-index entries unless both take them in one order; PostgreSQL
// then breaks the deadlock only after deadlock_timeout (1 s) by failing
// one batch. On the arrays path and on the COPY path, both batches are
// released at the same moment into the same keys, and both must commit,
// each key stored once, the other batch reporting it as a duplicate of
// that row, ids still in batch order.
func TestPostgresCrossBatchDuplicatesDoNotDeadlock(t *testing.T) {
	tests := []struct {
		name string
		rows int
	}{
		{"arrays", 100},
		{"COPY", 300},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, pool := openPostgres(t, pgtest.DSN(t), true)
			for round := range 3 {
				checkOppositeOrders(t, s, pool, round, tc.rows)
			}
		})
	}
}

func checkOppositeOrders(t *testing.T, s *store.Postgres, pool *pgxpool.Pool, round, rows int) {
	t.Helper()
	var forward []store.NewPayload
	for i := range rows {
		// Two mailboxes, and an unkeyed row now and then, as a batch of
		// captures has.
		p := payload(fmt.Sprint("github:us:", i%2), fmt.Sprint("round ", round, " body ", i))
		if i%10 != 9 {
			p.DeliveryKey = fmt.Sprint("r", round, "-", i)
		}
		forward = append(forward, p)
	}
	backward := slices.Clone(forward)
	slices.Reverse(backward)
	batches := [][]store.NewPayload{forward, backward}

	waitFor, release := holdPayloadInserts(t, pool)
	results := make([][]store.InsertResult, len(batches))
	errs := make([]error, len(batches))
	var wg sync.WaitGroup
	for i, b := range batches {
		wg.Go(func() { results[i], errs[i] = s.InsertPayloads(testCtx(t), b) })
	}
	waitFor(len(batches))
	start := time.Now()
	release()
	wg.Wait()
	took := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("round %d: batch %d failed after %s: %v", round, i, took.Round(time.Millisecond), err)
		}
	}
	stored := map[string]int64{} // key -> id of its row
	for i, b := range batches {
		last := int64(0)
		for j, r := range results[i] {
			p := b[j]
			if p.DeliveryKey == "" || !r.Duplicate {
				if r.Duplicate || r.ID == 0 {
					t.Fatalf("round %d: batch %d row %d = %+v, want a new row", round, i, j, r)
				}
				if r.ID <= last {
					t.Errorf("round %d: batch %d row %d got id %d after %d: ids out of batch order", round, i, j, r.ID, last)
				}
				last = r.ID
			}
			if p.DeliveryKey != "" && !r.Duplicate {
				if id, ok := stored[p.DeliveryKey]; ok {
					t.Errorf("round %d: key %s stored twice (%d and %d)", round, p.DeliveryKey, id, r.ID)
				}
				stored[p.DeliveryKey] = r.ID
			}
		}
	}
	for i, b := range batches {
		for j, r := range results[i] {
			if k := b[j].DeliveryKey; k != "" && r.Duplicate && r.ID != stored[k] {
				t.Errorf("round %d: batch %d row %d (%s) is a duplicate of %d, the row is %d", round, i, j, k, r.ID, stored[k])
			}
		}
	}
	if len(stored) != rows-rows/10 {
		t.Errorf("round %d: %d keys stored, want %d", round, len(stored), rows-rows/10)
	}
	t.Logf("round %d: both batches of %d rows committed %s after the release", round, rows, took.Round(time.Millisecond))
}
