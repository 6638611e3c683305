package drain

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/mailbox"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// pauseSource is the optional part of a Store that holds the operators'
// pauses (silo_pause, shared by every instance). Without it nothing is
// paused.
type pauseSource interface {
	Pauses(ctx context.Context) ([]store.Pause, error)
}

// pauses is what this drainer knows of the operators' pauses: a paused
// region or mailbox gets no delivery and spends no attempt. It is read
// from the store at every backstop scan (refresh), which a pause or a
// resume on any instance asks for at once (a local wake, or a NOTIFY), so
// a pause lands within a scan; a delivery in flight then finishes. When
// the store cannot be read, the pauses known last stay in force: a
// database hiccup must not resume a paused region.
type pauses struct {
	src pauseSource // nil: nothing is ever paused

	mu        sync.RWMutex
	regions   map[string]bool
	mailboxes map[string]bool
	loadedAt  time.Time
	lastErr   string
}

// refresh reads the pauses from the store.
func (ps *pauses) refresh(ctx context.Context, timeout time.Duration, warn *limitedLog) {
	if ps.src == nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	list, err := ps.src.Pauses(rctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		warn.warn("pauses", "reading the operators' pauses failed; the pauses known last stay in force", zap.Error(err))
		ps.mu.Lock()
		ps.lastErr = err.Error()
		ps.mu.Unlock()
		return
	}
	regions, boxes := map[string]bool{}, map[string]bool{}
	for _, p := range list {
		if p.Kind == store.PauseRegion {
			regions[p.Name] = true
		} else {
			boxes[p.Name] = true
		}
	}
	ps.mu.Lock()
	ps.regions, ps.mailboxes, ps.loadedAt, ps.lastErr = regions, boxes, time.Now(), ""
	ps.mu.Unlock()
}

// mailbox reports whether a mailbox is held by its name: paused itself,
// or its region paused (callback mailboxes aside, see holds).
func (ps *pauses) mailbox(name string) bool {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	if len(ps.mailboxes) == 0 && len(ps.regions) == 0 {
		return false
	}
	if ps.mailboxes[name] {
		return true
	}
	region, ok := RegionPauseHolds(name)
	return ok && ps.regions[region]
}

// holds reports whether row p of mailbox name must wait: the mailbox is
// paused, or the row's region is. A callback row the region answered
// already is not held by its region's pause: its POST goes to the
// response_url, not to the region, and a Slack response_url expires after
// 30 minutes.
func (ps *pauses) holds(name string, p *store.Payload) bool {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	return ps.mailboxes[name] || (!p.Answered && ps.regions[p.Region])
}

// state is what Status shows of the pauses.
func (ps *pauses) state() (loadedAt time.Time, lastErr string) {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	return ps.loadedAt, ps.lastErr
}

// RegionPauseHolds reports the region whose pause holds mailbox name, and
// whether there is one: every mailbox of the newest form but its region's
// callback mailboxes (see holds). The admin API shows pauses by the same
// rule the drainer applies.
func RegionPauseHolds(name string) (region string, ok bool) {
	m, parsed := mailbox.Parse(name)
	if !parsed || isCallback(m) {
		return "", false
	}
	return m.Region, true
}
