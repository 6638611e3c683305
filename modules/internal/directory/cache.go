package directory

import (
	"hash/maphash"
	"sync"
	"time"
)

// cacheShards spreads keys over independent locks so that readers on
// different keys never touch the same mutex word. A power of two.
const cacheShards = 64

// ttlCache is a bounded map with per-entry expiry, one per lookup kind. The
// hit path takes one shard read lock and does one map lookup: no
// allocation, no global lock. Expiry is checked on read. A found entry
// outlives its expiry by stale, for stale-if-error (peek reads it); a full
// shard first drops the entries that can never be served again (misses
// past expiry, found entries past expiry plus stale), then expired found
// entries, then arbitrary ones (Go map iteration starts at a random
// position), until it has room: a scan of random keys costs memory
// proportional to the bound, never more.
type ttlCache[K comparable, V any] struct {
	hash     func(K) uint64
	perShard int
	shards   [cacheShards]cacheShard[K, V]
	// stale is how long (nanoseconds) a found entry is kept past its
	// expiry. After the shards, so that the hit path's fields keep their
	// layout.
	stale int64
}

type cacheShard[K comparable, V any] struct {
	mu sync.RWMutex
	m  map[K]cacheEntry[V]
	// Pad to a cache line so neighbouring shards' locks do not share one.
	_ [32]byte
}

// cacheEntry is a found value, or a remembered miss when missing is set.
type cacheEntry[V any] struct {
	v       V
	expires int64 // unix nanoseconds
	missing bool
}

// deadline is when e can no longer be served at all: at its expiry for a
// miss, stale later for a found entry.
func (e cacheEntry[V]) deadline(stale int64) int64 {
	if e.missing {
		return e.expires
	}
	return e.expires + stale
}

func newTTLCache[K comparable, V any](maxEntries int, hash func(K) uint64, stale time.Duration) *ttlCache[K, V] {
	per := maxEntries / cacheShards
	if per < 1 {
		per = 1
	}
	c := &ttlCache[K, V]{hash: hash, perShard: per, stale: max(int64(stale), 0)}
	for i := range c.shards {
		c.shards[i].m = make(map[K]cacheEntry[V])
	}
	return c
}

func (c *ttlCache[K, V]) shard(k K) *cacheShard[K, V] {
	return &c.shards[c.hash(k)&(cacheShards-1)]
}

// get returns the entry for k if it has not expired at now.
func (c *ttlCache[K, V]) get(k K, now int64) (cacheEntry[V], bool) {
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok || now >= e.expires {
		return cacheEntry[V]{}, false
	}
	return e, true
}

// peek returns the entry for k whether or not it has expired.
func (c *ttlCache[K, V]) peek(k K) (cacheEntry[V], bool) {
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	return e, ok
}

// put stores e under k, making room first when the shard is full.
func (c *ttlCache[K, V]) put(k K, e cacheEntry[V], now int64) {
	s := c.shard(k)
	s.mu.Lock()
	c.makeRoom(s, k, now)
	s.m[k] = e
	s.mu.Unlock()
}

// restore stores e under k unless the entry already there expires later
// (a newer answer), making room as put does. It reports whether it stored.
func (c *ttlCache[K, V]) restore(k K, e cacheEntry[V], now int64) bool {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[k]; ok && old.expires >= e.expires {
		return false
	}
	c.makeRoom(s, k, now)
	s.m[k] = e
	return true
}

// makeRoom evicts from a full shard (its lock held) before k is added.
func (c *ttlCache[K, V]) makeRoom(s *cacheShard[K, V], k K, now int64) {
	if _, exists := s.m[k]; exists || len(s.m) < c.perShard {
		return
	}
	for key, old := range s.m {
		if now >= old.deadline(c.stale) {
			delete(s.m, key)
		}
	}
	for key, old := range s.m {
		if len(s.m) < c.perShard {
			return
		}
		if now >= old.expires {
			delete(s.m, key)
		}
	}
	for key := range s.m {
		if len(s.m) < c.perShard {
			return
		}
		delete(s.m, key)
	}
}

// each calls fn with every entry, one shard at a time under its read lock
// (fn must not call back into the cache).
func (c *ttlCache[K, V]) each(fn func(K, cacheEntry[V])) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		for k, e := range s.m {
			fn(k, e)
		}
		s.mu.RUnlock()
	}
}

// purge drops every entry.
func (c *ttlCache[K, V]) purge() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}

// len counts entries, expired or not (tests and diagnostics).
func (c *ttlCache[K, V]) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

var hashSeed = maphash.MakeSeed()

func hashString(s string) uint64 { return maphash.String(hashSeed, s) }

// hashInt mixes an id so that sequential ids spread over all shards
// (the finaliser of splitmix64).
func hashInt(v int64) uint64 {
	x := uint64(v)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// externalKey identifies an integration by provider and external id. The
// fields are exported for the snapshot's encoding.
type externalKey struct {
	Provider, ExternalID string
}

func hashExternal(k externalKey) uint64 {
	return hashString(k.Provider)*31 ^ hashString(k.ExternalID)
}
