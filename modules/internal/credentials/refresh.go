package credentials

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// tokenSlot says where a token lives in its document and how it expires.
type tokenSlot struct {
	provider  string
	expiryKey string
	// expiryRequired makes a token without an expiry count as expired
	// (GitHub, MS Teams); OAuth identities without one never expire.
	expiryRequired bool
}

// usable returns the document's token when it may be sent now: present,
// not the one that just failed, and not within the margin of its expiry.
func (m *Manager) usable(doc document, slot tokenSlot, failed *Grant) (string, bool) {
	tok := doc.str("access_token")
	if tok == "" || (failed != nil && tok == failed.token) {
		return "", false
	}
	exp, ok := doc.expiry(slot.expiryKey)
	if !ok {
		return tok, !slot.expiryRequired
	}
	return tok, m.cfg.Now().Add(m.cfg.Margin).Before(exp)
}

// fetchFunc calls a token endpoint. cur is the document as read under the
// row lock; the returned keys are merged into it.
type fetchFunc func(ctx context.Context, cur document) (token string, set map[string]any, err error)

// refresh replaces the token of one row: single-flighted per row (and per
// failed token, so a forced refresh never joins a flight that may hand
// back the very token that failed) and run under the store's row lock,
// where the current token is read again and kept if another instance has
// refreshed it meanwhile. The refresh is detached from the caller's
// context: it is shared, and a token fetched must be stored.
func (m *Manager) refresh(ctx context.Context, kind string, id int64, slot tokenSlot, failed *Grant, fetch fetchFunc) (string, error) {
	key := rowKey(kind, id)
	if failed != nil {
		key += "|" + failed.token
	}
	ch := m.flight.DoChan(key, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.RefreshTimeout)
		defer cancel()
		st := m.store()
		if st == nil {
			return "", errors.New("credentials: no store")
		}
		var token, outcome string
		update := st.UpdateIntegrationMetadata
		if kind == kindIdentity {
			update = st.UpdateIdentityData
		}
		_, err := update(ctx, id, func(current json.RawMessage) (json.RawMessage, bool, error) {
			doc := parseDocument(current)
			if tok, ok := m.usable(doc, slot, failed); ok {
				token, outcome = tok, "reused"
				m.remember(rowKey(kind, id), tok, doc, slot)
				return nil, false, nil
			}
			tok, set, err := fetch(ctx, doc)
			if err != nil {
				return nil, false, err
			}
			set["access_token"] = tok
			next, err := merge(current, set)
			if err != nil {
				return nil, false, err
			}
			token, outcome = tok, "ok"
			m.remember(rowKey(kind, id), tok, parseDocument(next), slot)
			return next, true, nil
		})
		if err != nil {
			m.cfg.Observe(slot.provider, "error")
			if errors.Is(err, directory.ErrNotFound) {
				return "", errors.Join(ErrInvalid, err)
			}
			return "", err
		}
		m.cfg.Observe(slot.provider, outcome)
		return token, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return "", res.Err
		}
		return res.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}
