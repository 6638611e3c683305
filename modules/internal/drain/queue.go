package drain

import (
	"sync"
	"time"
)

// maxQueue bounds the in-memory queue of woken mailboxes. Past it a wake
// turns into a backstop scan, so a flood of distinct mailboxes cannot grow
// memory; the rows are in the store either way.
const maxQueue = 100_000

// workQueue is what the dispatcher hands to workers: the mailboxes woken
// or found due, each queued once, and the state of those being drained.
// Its methods are safe for concurrent use.
type workQueue struct {
	// paused reports whether a mailbox's region has its breaker open.
	paused func(name string) bool
	wakeCh chan struct{}

	mu      sync.Mutex
	queue   []string
	queued  map[string]struct{}
	active  map[string]bool // mailboxes being drained here -> woken again meanwhile
	busy    int
	scanAll bool
	parked  map[string]time.Time // mailboxes set aside until then (real time)
}

func newWorkQueue(paused func(name string) bool) *workQueue {
	return &workQueue{
		paused: paused,
		wakeCh: make(chan struct{}, 1),
		queued: make(map[string]struct{}),
		active: make(map[string]bool),
		parked: make(map[string]time.Time),
	}
}

// wake queues these mailboxes, or asks for a full scan with none, and
// signals the dispatcher. It never blocks.
func (q *workQueue) wake(mailboxes ...string) {
	q.mu.Lock()
	if len(mailboxes) == 0 {
		q.scanAll = true
	}
	for _, name := range mailboxes {
		q.enqueueLocked(name)
	}
	q.mu.Unlock()
	q.signal()
}

// woken receives when there is work to dispatch.
func (q *workQueue) woken() <-chan struct{} { return q.wakeCh }

func (q *workQueue) signal() {
	select {
	case q.wakeCh <- struct{}{}:
	default:
	}
}

// enqueueLocked queues a mailbox once; one being drained here is marked to
// be drained again when its turn ends, since its worker may already have
// read past the new rows.
func (q *workQueue) enqueueLocked(name string) {
	if name == "" {
		q.scanAll = true
		return
	}
	if _, ok := q.active[name]; ok {
		q.active[name] = true
		return
	}
	if _, ok := q.queued[name]; ok {
		return
	}
	if len(q.queue) >= maxQueue {
		q.scanAll = true
		return
	}
	q.queued[name] = struct{}{}
	q.queue = append(q.queue, name)
}

// requestScan asks the dispatcher for a backstop scan at its next round.
func (q *workQueue) requestScan() {
	q.mu.Lock()
	q.scanAll = true
	q.mu.Unlock()
}

// takeScan reports whether a scan was asked for, and clears the request.
func (q *workQueue) takeScan() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	scan := q.scanAll
	q.scanAll = false
	return scan
}

// addDue queues the due mailboxes a scan found, but those drained here
// now (their worker is on them) and those that must wait. It returns how
// many had to wait.
func (q *workQueue) addDue(names []string) (blocked int) {
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, name := range names {
		if _, ok := q.active[name]; ok {
			continue // its worker is on it
		}
		if q.blockedLocked(name, now) {
			blocked++
			continue
		}
		q.enqueueLocked(name)
	}
	return blocked
}

// handOut gives queued mailboxes to idle workers, at most workers at once.
func (q *workQueue) handOut(work chan<- string, workers int) {
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.busy < workers && len(q.queue) > 0 {
		name := q.queue[0]
		q.queue[0] = ""
		q.queue = q.queue[1:]
		delete(q.queued, name)
		if _, ok := q.active[name]; ok {
			q.active[name] = true
			continue
		}
		if q.blockedLocked(name, now) {
			continue
		}
		q.active[name] = false
		q.busy++
		work <- name // never blocks: capacity is workers and busy < workers
	}
	if len(q.queue) == 0 && cap(q.queue) > 1024 {
		q.queue = nil // give a large drained backlog's array back
	}
}

// finish ends a mailbox's turn, queueing it again when it was woken
// meanwhile or stopped only because its claim was used up.
func (q *workQueue) finish(name string, more bool) {
	q.mu.Lock()
	dirty := q.active[name]
	delete(q.active, name)
	q.busy--
	if dirty || more {
		q.enqueueLocked(name)
	}
	q.mu.Unlock()
	q.signal()
}

// blockedLocked reports whether a mailbox must wait: its region's breaker
// is open, or it was set aside (unknown region).
func (q *workQueue) blockedLocked(name string, now time.Time) bool {
	if until, ok := q.parked[name]; ok {
		if now.Before(until) {
			return true
		}
		delete(q.parked, name)
	}
	return q.paused(name)
}

// park sets a mailbox aside for a while.
func (q *workQueue) park(name string, for_ time.Duration) {
	q.mu.Lock()
	q.parked[name] = time.Now().Add(for_)
	if len(q.parked) > maxQueue {
		now := time.Now()
		for k, until := range q.parked {
			if now.After(until) {
				delete(q.parked, k)
			}
		}
	}
	q.mu.Unlock()
}

// isActive reports whether a mailbox is being drained (or its lease
// released) here.
func (q *workQueue) isActive(name string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.active[name]
	return ok
}

// reserve marks an idle mailbox active, so that the dispatcher does not
// hand it to a worker while its lease is being released (a release landing
// after a fresh claim would delete the fresh lease). It reports false when
// the mailbox is active already.
func (q *workQueue) reserve(name string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.active[name]; ok {
		return false
	}
	q.active[name] = false
	return true
}

// unreserve ends a reserve, queueing the mailbox when it was woken
// meanwhile.
func (q *workQueue) unreserve(name string) {
	q.mu.Lock()
	dirty := q.active[name]
	delete(q.active, name)
	if dirty {
		q.enqueueLocked(name)
	}
	q.mu.Unlock()
	if dirty {
		q.signal()
	}
}
