package credentials

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// DefaultCacheFor is how long a token read from or written to the store
// is used from memory before the store is read again.
const DefaultCacheFor = 5 * time.Second

// tokenCache keeps the tokens this process last read from or wrote to the
// store, so a call with a valid token costs no database read. An entry
// is used only until the earlier of its token's expiry (less the margin)
// and Config.CacheFor after it was read; a refresh decision is never
// taken on it: refreshes always re-read the row under its lock. A 401
// evicts the entry.
type tokenCache struct {
	m sync.Map // key -> cachedToken
}

type cachedToken struct {
	token string
	until time.Time
}

func (c *tokenCache) get(key string, now time.Time) (string, bool) {
	v, ok := c.m.Load(key)
	if !ok {
		return "", false
	}
	e := v.(cachedToken)
	if !now.Before(e.until) {
		return "", false
	}
	return e.token, true
}

func (c *tokenCache) put(key, token string, until time.Time) {
	c.m.Store(key, cachedToken{token: token, until: until})
}

func (c *tokenCache) forget(key string) { c.m.Delete(key) }

func rowKey(kind string, id int64) string { return kind + ":" + strconv.FormatInt(id, 10) }

// remember caches tok from doc until its expiry less the margin, and no
// longer than CacheFor.
func (m *Manager) remember(key, tok string, doc document, slot tokenSlot) {
	if m.cfg.CacheFor <= 0 {
		return
	}
	now := m.cfg.Now()
	until := now.Add(m.cfg.CacheFor)
	if exp, ok := doc.expiry(slot.expiryKey); ok && exp.Add(-m.cfg.Margin).Before(until) {
		until = exp.Add(-m.cfg.Margin)
	}
	if until.After(now) {
		m.tokens.put(key, tok, until)
	}
}

// documentToken returns the token of one row (an integration's metadata
// or an identity's data): from memory, else read from the store (never
// from the directory cache), else refreshed with fetch under the row
// lock. failed, after a 401, forces the refresh unless the row already
// holds another token. A nil fetch means the token cannot be refreshed.
func (m *Manager) documentToken(ctx context.Context, kind string, id int64, slot tokenSlot, failed *Grant, fetch fetchFunc) (string, error) {
	key := rowKey(kind, id)
	if failed == nil {
		if tok, ok := m.tokens.get(key, m.cfg.Now()); ok {
			return tok, nil
		}
		doc, err := m.readDocument(ctx, kind, id)
		if err != nil {
			return "", err
		}
		if tok, ok := m.usable(doc, slot, nil); ok {
			m.remember(key, tok, doc, slot)
			return tok, nil
		}
	} else {
		m.tokens.forget(key)
	}
	if fetch == nil {
		return "", fmt.Errorf("%w: %s integration has no usable token", ErrInvalid, slot.provider)
	}
	return m.refresh(ctx, kind, id, slot, failed, fetch)
}

func (m *Manager) readDocument(ctx context.Context, kind string, id int64) (document, error) {
	st := m.store()
	if st == nil {
		return nil, errors.New("credentials: no store")
	}
	var (
		raw []byte
		err error
	)
	if kind == kindIdentity {
		var ident directory.Identity
		ident, err = st.Identity(ctx, id)
		raw = ident.Data
	} else {
		var integ directory.Integration
		integ, err = st.IntegrationByID(ctx, id)
		raw = integ.Metadata
	}
	if errors.Is(err, directory.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s %d not found", ErrInvalid, kind, id)
	}
	if err != nil {
		return nil, err
	}
	return parseDocument(raw), nil
}

const (
	kindIntegration = "integration"
	kindIdentity    = "identity"
)
