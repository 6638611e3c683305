package mailbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
	"github.com/sentrysilo/caddy-silo/modules/internal/store/storetest"
)

// gatedInsert holds the first len(gates) calls of insert until their gate
// is closed, and reports the size of each held batch on entered.
type gatedInsert struct {
	insert  InsertFunc
	gates   []chan struct{}
	entered chan int
	calls   atomic.Int32
}

func newGatedInsert(insert InsertFunc, held int) *gatedInsert {
	g := &gatedInsert{insert: insert, entered: make(chan int, held)}
	for range held {
		g.gates = append(g.gates, make(chan struct{}))
	}
	return g
}

func (g *gatedInsert) run(ctx context.Context, rows []store.NewPayload) ([]store.InsertResult, error) {
	if n := int(g.calls.Add(1)); n <= len(g.gates) {
		g.entered <- len(rows)
		<-g.gates[n-1]
	}
	return g.insert(ctx, rows)
}

// ownershipEngine opens a migrated store for the ownership test.
// payloadStore is what these tests use of an engine: the insert, and the
// read-back of every stored body.
type payloadStore interface {
	InsertPayloads(ctx context.Context, payloads []store.NewPayload) ([]store.InsertResult, error)
	NextPayloads(ctx context.Context, mailbox string, afterID int64, now time.Time, dueOnly bool, limit int) ([]store.Payload, error)
}

type ownershipEngine struct {
	name string
	// inFlight is how many rows the held batch carries: from 256 on,
	// PostgreSQL takes the COPY path, which reads the bodies only when
	// the COPY runs.
	inFlight int
	open     func(t *testing.T) payloadStore
}

func openTestPostgres(t *testing.T) payloadStore { return storetest.Postgres(t) }

func openTestSQLite(t *testing.T) payloadStore { return storetest.SQLite(t) }

// TestBatcherAbandonedSubmitsKeepTheirBytes: clients that give up while
// the database is slow must never get another request's bytes (or a
// zeroed row) stored under their delivery. On each engine, and on
// PostgreSQL's arrays and COPY paths, one batch is held inside the
// insert while half of its submitters cancel, and more submitters cancel
// while queued behind it; each recycles its buffers the moment the
// batcher lets it (overwriting the body with another request's bytes and
// zeroing its rows, as the capture handler's pools do). Every stored body
// is then read back and compared byte for byte with what its sender sent.
func TestBatcherAbandonedSubmitsKeepTheirBytes(t *testing.T) {
	engines := []ownershipEngine{
		{"postgres arrays", 100, openTestPostgres},
		{"postgres COPY", 300, openTestPostgres},
		{"sqlite", 100, openTestSQLite},
	}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			st := e.open(t)
			g := newGatedInsert(st.InsertPayloads, 2)
			b := NewBatcher(g.run, BatcherOptions{Flushers: 1})
			defer b.Close()
			checkAbandonedSubmits(t, st, b, g, e.inFlight)
		})
	}
}

// sender is one submitter of the ownership test, with buffers of its own.
type sender struct {
	key      string
	sent     []byte // what it sent, kept aside
	body     []byte // its (recyclable) body buffer
	rows     []store.NewPayload
	cancel   context.CancelFunc
	ctx      context.Context
	res      []store.InsertResult
	err      error
	done     chan struct{}
	released atomic.Int32
}

const ownershipMailbox = "github:us:1"

func newSender(kind string, i int) *sender {
	s := &sender{key: fmt.Sprintf("%s-%04d", kind, i), done: make(chan struct{})}
	s.sent = fmt.Appendf(nil, `{"delivery":%q,"pad":"%s"}`, s.key, bytes.Repeat([]byte{'a' + byte(i%26)}, 200))
	s.body = bytes.Clone(s.sent)
	s.rows = []store.NewPayload{{MailboxName: ownershipMailbox, Region: "us", Method: "POST", Path: "/extensions/github/webhook/",
		Body: s.body, DeliveryKey: s.key}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// recycle is what a pooled caller does with its buffers once they are its
// own again: the next request's bytes go into the body, the rows are
// zeroed.
func (s *sender) recycle() {
	s.released.Add(1)
	copy(s.body, bytes.Repeat([]byte{'Z'}, len(s.body)))
	copy(s.body, "another request's body")
	clear(s.rows)
}

func (s *sender) submit(b *Batcher) {
	go func() {
		defer close(s.done)
		s.res, s.err = b.Submit(s.ctx, s.rows, ReleaseFunc(s.recycle))
	}()
}

func checkAbandonedSubmits(t *testing.T, st payloadStore, b *Batcher, g *gatedInsert, inFlight int) {
	ctx := context.Background()
	waitQueued := func(n int) {
		t.Helper()
		if err := harness.Poll(10*time.Second, func() bool { return len(b.queue) >= n }); err != nil {
			t.Fatalf("%d jobs queued, want %d: %v", len(b.queue), n, err)
		}
	}
	// A first batch holds the flusher while the batch under test queues.
	blocker := newSender("blocker", 0)
	blocker.submit(b)
	if n := <-g.entered; n != 1 {
		t.Fatalf("first batch has %d rows, want 1", n)
	}
	// The batch under test: every other sender gives up while it is held
	// inside the insert.
	var held []*sender
	for i := range inFlight {
		s := newSender("inflight", i)
		held = append(held, s)
		s.submit(b)
	}
	waitQueued(inFlight)
	close(g.gates[0])
	if n := <-g.entered; n != inFlight {
		t.Fatalf("held batch has %d rows, want %d", n, inFlight)
	}
	var gaveUp []*sender
	for i, s := range held {
		if i%2 == 0 {
			s.cancel()
			<-s.done
			gaveUp = append(gaveUp, s)
		}
	}
	// Senders queued behind it give up before any flusher takes them.
	var queued []*sender
	for i := range 50 {
		s := newSender("queued", i)
		queued = append(queued, s)
		s.submit(b)
	}
	waitQueued(len(queued))
	for _, s := range queued {
		s.cancel()
		<-s.done
	}
	close(g.gates[1])
	// Flushers take jobs in order: once a later patient submit is done,
	// every job above is.
	last := newSender("last", 0)
	last.submit(b)
	<-last.done
	if last.err != nil {
		t.Fatalf("submit after the release: %v", last.err)
	}
	<-blocker.done
	if blocker.err != nil {
		t.Errorf("first submit: %v", blocker.err)
	}
	for i, s := range held {
		<-s.done
		if i%2 == 1 && s.err != nil {
			t.Errorf("patient sender %s: %v", s.key, s.err)
		}
	}
	for _, s := range gaveUp {
		if !errors.Is(s.err, context.Canceled) {
			t.Errorf("sender %s gave up, Submit = %v, want context.Canceled", s.key, s.err)
		}
	}

	all := append(append([]*sender{blocker, last}, held...), queued...)
	byKey := map[string]*sender{}
	for _, s := range all {
		byKey[s.key] = s
	}
	stored, err := st.NextPayloads(ctx, ownershipMailbox, 0, time.Now(), false, 10000)
	if err != nil {
		t.Fatal(err)
	}
	wrong, gaveUpStored := 0, 0
	seen := map[string]int{}
	for _, p := range stored {
		s := byKey[p.DeliveryKey]
		if s == nil {
			t.Errorf("row %d has delivery key %q, which nobody sent", p.ID, p.DeliveryKey)
			continue
		}
		seen[s.key]++
		if !bytes.Equal(p.Body, s.sent) {
			wrong++
			if wrong <= 3 {
				t.Errorf("row %d (%s) stored %.60q, its sender sent %.60q", p.ID, s.key, p.Body, s.sent)
			}
		}
		if s.err != nil {
			gaveUpStored++
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d stored rows hold bytes their sender did not send", wrong, len(stored))
	}
	for _, s := range all {
		if s.err == nil && seen[s.key] != 1 {
			t.Errorf("sender %s got a 202 and is stored %d times", s.key, seen[s.key])
		}
		if seen[s.key] > 1 {
			t.Errorf("sender %s stored %d times", s.key, seen[s.key])
		}
	}
	for _, s := range all {
		if n := s.released.Load(); n != 1 {
			t.Errorf("sender %s: its buffers were released %d times, want once", s.key, n)
		}
	}
	for _, s := range queued {
		if seen[s.key] > 0 {
			t.Errorf("sender %s gave up before any flusher took its rows, and they were stored", s.key)
		}
	}
	t.Logf("%d rows stored, %d of them from senders that gave up while their batch was held; %d wrong", len(stored), gaveUpStored, wrong)
}

// TestBatcherReleasesOnce: whatever becomes of a Submit, its rows' owner
// is released exactly once, and only after the insert is done with them.
func TestBatcherReleasesOnce(t *testing.T) {
	tests := []struct {
		name    string
		opts    BatcherOptions
		fail    error
		ctx     func() context.Context
		wantErr error
	}{
		{name: "committed", wantErr: nil},
		{name: "store down", fail: store.ErrUnavailable, wantErr: store.ErrUnavailable},
		{name: "bad row", fail: store.ErrInvalidPayload, wantErr: store.ErrInvalidPayload},
		{name: "ctx ended before queueing", ctx: func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, wantErr: context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var inserting atomic.Bool
			var releasedDuringInsert atomic.Bool
			f := &fakeInsert{fail: func([]store.NewPayload) error { return tc.fail }}
			insert := func(ctx context.Context, rows []store.NewPayload) ([]store.InsertResult, error) {
				inserting.Store(true)
				defer inserting.Store(false)
				return f.insert(ctx, rows)
			}
			b := NewBatcher(insert, tc.opts)
			defer b.Close()
			ctx := context.Background()
			if tc.ctx != nil {
				ctx = tc.ctx()
			}
			var released atomic.Int32
			owner := ReleaseFunc(func() {
				released.Add(1)
				if inserting.Load() {
					releasedDuringInsert.Store(true)
				}
			})
			_, err := b.Submit(ctx, []store.NewPayload{row("a:us:1")}, owner)
			if !errors.Is(err, tc.wantErr) && !(tc.wantErr == nil && err == nil) {
				t.Fatalf("Submit = %v, want %v", err, tc.wantErr)
			}
			if n := released.Load(); n != 1 {
				t.Fatalf("released %d times before Submit returned, want once", n)
			}
			if releasedDuringInsert.Load() {
				t.Fatal("released while the insert was reading the rows")
			}
		})
	}
}
