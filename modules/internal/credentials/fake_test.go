package credentials

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"sync"
	"testing"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// memStore is a Store with one lock per row, standing in for SELECT ...
// FOR UPDATE. Several Managers may share one to play several instances.
type memStore struct {
	mu         sync.Mutex
	rows       map[string]*sync.Mutex
	metadata   map[int64]json.RawMessage
	identities map[int64]json.RawMessage
}

func newMemStore() *memStore {
	return &memStore{rows: map[string]*sync.Mutex{}, metadata: map[int64]json.RawMessage{}, identities: map[int64]json.RawMessage{}}
}

func (s *memStore) rowLock(key string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.rows[key]
	if !ok {
		l = &sync.Mutex{}
		s.rows[key] = l
	}
	return l
}

func (s *memStore) Identity(_ context.Context, id int64) (directory.Identity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.identities[id]
	if !ok {
		return directory.Identity{}, directory.ErrNotFound
	}
	return directory.Identity{ID: id, Data: d}, nil
}

func (s *memStore) IntegrationByID(_ context.Context, id int64) (directory.Integration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	md, ok := s.metadata[id]
	if !ok {
		return directory.Integration{}, directory.ErrNotFound
	}
	return directory.Integration{ID: id, Metadata: md}, nil
}

func (s *memStore) update(table map[int64]json.RawMessage, kind string, id int64, fn func(json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, error) {
	l := s.rowLock(kind + string(rune(id)))
	l.Lock()
	defer l.Unlock()
	s.mu.Lock()
	cur, ok := table[id]
	s.mu.Unlock()
	if !ok {
		return nil, directory.ErrNotFound
	}
	next, write, err := fn(cur)
	if err != nil || !write {
		return cur, err
	}
	s.mu.Lock()
	table[id] = next
	s.mu.Unlock()
	return next, nil
}

func (s *memStore) UpdateIntegrationMetadata(_ context.Context, id int64, fn func(json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, error) {
	return s.update(s.metadata, "i", id, fn)
}

func (s *memStore) UpdateIdentityData(_ context.Context, id int64, fn func(json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, error) {
	return s.update(s.identities, "d", id, fn)
}

func (s *memStore) get(table map[int64]json.RawMessage, id int64) document {
	s.mu.Lock()
	defer s.mu.Unlock()
	return parseDocument(table[id])
}

var (
	keyOnce sync.Once
	testKey *rsa.PrivateKey
)

func rsaKey(t testing.TB) *rsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testKey = k
	})
	return testKey
}
