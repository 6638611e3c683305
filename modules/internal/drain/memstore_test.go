package drain

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// memStore is an in-memory testStore with the drain semantics of the real
// engines (leases, FIFO heads, dead letters, replays).
type memStore struct {
	mu               sync.Mutex
	now              func() time.Time
	nextID           int64
	rows             map[int64]*store.Payload
	dead             map[int64]*store.DeadLetter
	leases           map[string]memLease
	claims, releases int
}

type memLease struct {
	owner string
	until time.Time
}

var thePast = time.Date(2016, 8, 1, 0, 0, 0, 0, time.UTC)

func newMemStore(now func() time.Time) *memStore {
	if now == nil {
		now = time.Now
	}
	return &memStore{
		now:    now,
		rows:   map[int64]*store.Payload{},
		dead:   map[int64]*store.DeadLetter{},
		leases: map[string]memLease{},
	}
}

func (m *memStore) Engine() string { return "memory" }

func (m *memStore) InsertPayloads(ctx context.Context, ps []store.NewPayload) ([]store.InsertResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]store.InsertResult, len(ps))
	for i, np := range ps {
		m.nextID++
		p := &store.Payload{ID: m.nextID, NewPayload: np, DateAdded: m.now(), ScheduleFor: thePast}
		if p.DestinationType == "" {
			p.DestinationType = store.DestinationRegion
		}
		p.Headers = p.Headers.Clone()
		if p.Headers == nil {
			p.Headers = http.Header{}
		}
		m.rows[p.ID] = p
		out[i] = store.InsertResult{ID: p.ID}
	}
	return out, nil
}

func (m *memStore) mailboxRows(name string) []*store.Payload {
	var out []*store.Payload
	for _, p := range m.rows {
		if p.MailboxName == name {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (m *memStore) DueMailboxes(ctx context.Context, now time.Time, limit int, skip []string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	skipSet := map[string]bool{}
	for _, s := range skip {
		skipSet[s] = true
	}
	byBox := map[string][]*store.Payload{}
	for _, p := range m.rows {
		byBox[p.MailboxName] = append(byBox[p.MailboxName], p)
	}
	type due struct {
		name string
		id   int64
	}
	var dues []due
	for name, ps := range byBox {
		if l, ok := m.leases[name]; ok && l.until.After(now) {
			continue
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i].ID < ps[j].ID })
		if skipSet[ps[0].Provider] {
			for _, p := range ps {
				if !p.ScheduleFor.After(now) {
					dues = append(dues, due{name, p.ID})
					break
				}
			}
		} else if !ps[0].ScheduleFor.After(now) {
			dues = append(dues, due{name, ps[0].ID})
		}
	}
	sort.Slice(dues, func(i, j int) bool { return dues[i].id < dues[j].id })
	var out []string
	for _, d := range dues {
		if len(out) == limit {
			break
		}
		out = append(out, d.name)
	}
	return out, nil
}

func (m *memStore) ClaimMailbox(ctx context.Context, mailbox, owner string, now, until time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.claims++
	if l, ok := m.leases[mailbox]; ok && l.owner != owner && l.until.After(now) {
		return false, nil
	}
	m.leases[mailbox] = memLease{owner, until}
	return true, nil
}

func (m *memStore) RenewLease(ctx context.Context, mailbox, owner string, until time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[mailbox]; !ok || l.owner != owner {
		return false, nil
	}
	m.leases[mailbox] = memLease{owner, until}
	return true, nil
}

func (m *memStore) ReleaseMailbox(ctx context.Context, mailbox, owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releases++
	if l, ok := m.leases[mailbox]; ok && l.owner == owner {
		delete(m.leases, mailbox)
	}
	return nil
}

func (m *memStore) NextPayloads(ctx context.Context, mailbox string, afterID int64, now time.Time, dueOnly bool, limit int) ([]store.Payload, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Payload
	for _, p := range m.mailboxRows(mailbox) {
		if p.ID <= afterID || (dueOnly && p.ScheduleFor.After(now)) {
			continue
		}
		cp := *p
		cp.Headers = p.Headers.Clone()
		out = append(out, cp)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

func (m *memStore) DeletePayload(ctx context.Context, id int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.rows[id]; !ok {
		return store.ErrNotFound
	}
	delete(m.rows, id)
	return nil
}

func (m *memStore) ReschedulePayload(ctx context.Context, id int64, attempts int, at time.Time, status int, lastErr string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.rows[id]
	if !ok {
		return store.ErrNotFound
	}
	p.Attempts, p.ScheduleFor, p.LastStatus, p.LastError = attempts, at, status, lastErr
	return nil
}

func (m *memStore) DeadLetterPayload(ctx context.Context, id int64, reason string, status int, lastErr string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.rows[id]
	if !ok {
		return store.ErrNotFound
	}
	delete(m.rows, id)
	dl := &store.DeadLetter{Payload: *p, Reason: reason, DeadAt: now}
	dl.LastStatus, dl.LastError = status, lastErr
	m.dead[id] = dl
	return nil
}

func (m *memStore) RecordRegionAnswer(ctx context.Context, id int64, mailbox string, answer []byte, status int, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.rows[id]
	if !ok {
		return store.ErrNotFound
	}
	p.Answered, p.RegionAnswer = true, append([]byte{}, answer...)
	p.MailboxName, p.Attempts, p.ScheduleFor, p.LastStatus, p.LastError = mailbox, 0, now, status, ""
	return nil
}

func (m *memStore) Mailboxes(ctx context.Context, now time.Time) ([]store.MailboxStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := map[string]bool{}
	for _, p := range m.rows {
		names[p.MailboxName] = true
	}
	var out []store.MailboxStats
	for name := range names {
		ps := m.mailboxRows(name)
		head := ps[0]
		next := head.ScheduleFor
		if next.Before(now) {
			next = now
		}
		out = append(out, store.MailboxStats{
			Name: name, Region: head.Region, Provider: head.Provider, Depth: int64(len(ps)),
			OldestAge: now.Sub(head.DateAdded).Seconds(), HeadAttempts: head.Attempts, NextAttemptAt: next,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (m *memStore) DeadLetters(ctx context.Context, limit int, after int64) ([]store.DeadLetter, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []int64
	for id := range m.dead {
		if id > after {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var out []store.DeadLetter
	for _, id := range ids {
		if len(out) == limit {
			break
		}
		out = append(out, *m.dead[id])
	}
	return out, nil
}

func (m *memStore) ReplayDeadLetter(ctx context.Context, id int64, now time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dl, ok := m.dead[id]
	if !ok {
		return 0, store.ErrNotFound
	}
	delete(m.dead, id)
	m.nextID++
	p := dl.Payload
	p.ID, p.Attempts, p.ScheduleFor, p.DateAdded, p.LastStatus, p.LastError = m.nextID, 0, thePast, now, 0, ""
	m.rows[p.ID] = &p
	return p.ID, nil
}

func (m *memStore) PurgeDeadLetters(ctx context.Context, before time.Time, batch int) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id, dl := range m.dead {
		if n == batch {
			break
		}
		if dl.DeadAt.Before(before) {
			delete(m.dead, id)
			n++
		}
	}
	return n, nil
}

// leaseCounts are the claims and releases made, and the leases live.
func (m *memStore) leaseCounts() (claims, releases, live int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.claims, m.releases, len(m.leases)
}

func (m *memStore) pendingCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rows)
}
