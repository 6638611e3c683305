package drain

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Status is what the drainer knows of itself, for the admin API's status
// route: plain values, read at the moment of the call.
type Status struct {
	Owner   string
	Running bool
	Workers int
	// Busy workers are draining a mailbox; Queued mailboxes wait for one.
	Busy, Queued int
	// LeasesHeld are the mailbox leases this drainer owns.
	LeasesHeld         int
	DeliveredRetention time.Duration
	// DeliveredPerSecond is the rate of payloads delivered to a region
	// by this process over RateWindow (the last minute, shorter right
	// after the start).
	DeliveredPerSecond float64
	RateWindow         time.Duration
	Regions            []RegionStatus
	// PausesLoadedAt is when the operators' pauses were last read;
	// PausesError why the last read failed ("" when it worked).
	PausesLoadedAt time.Time
	PausesError    string
}

// RegionStatus is one region as this drainer sees it.
type RegionStatus struct {
	Name                string
	BreakerOpen         bool
	ConsecutiveFailures int
	// InFlight counts the requests to the region's address open now
	// (deliveries and probes).
	InFlight int
	// LastError is the last connection error, timeout, 429 or 5xx
	// answer of a request to the region (never a URL, header or body),
	// LastErrorAt its time; "" and zero when none.
	LastError   string
	LastErrorAt time.Time
}

// Status reports the drainer's state and, for each of regions, its
// breaker and traffic.
func (d *Drainer) Status(regions []string) Status {
	s := Status{
		Owner:              d.cfg.Owner,
		Running:            d.running.Load(),
		Workers:            d.cfg.Workers,
		LeasesHeld:         d.leases.count(),
		DeliveredRetention: d.cfg.DeliveredRetention,
	}
	if d.history == nil {
		s.DeliveredRetention = 0
	}
	s.Busy, s.Queued = d.work.load()
	s.DeliveredPerSecond, s.RateWindow = d.m.Delivered.Rate()
	s.PausesLoadedAt, s.PausesError = d.pauses.state()
	for _, name := range regions {
		r := RegionStatus{Name: name}
		if b := d.breakers.peek(name); b != nil {
			r.BreakerOpen, r.ConsecutiveFailures = b.state()
		}
		if base, ok := d.regions(name); ok {
			r.InFlight, r.LastError, r.LastErrorAt = d.traffic.host(base.Host)
		}
		s.Regions = append(s.Regions, r)
	}
	return s
}

// load is how many workers are busy and how many mailboxes wait.
func (q *workQueue) load() (busy, queued int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.busy, len(q.queue)
}

// count is how many leases this drainer holds.
func (k *leaseKeeper) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.held)
}

// peek returns the region's breaker, nil when nothing was sent to it yet.
func (rb *regionBreakers) peek(region string) *breaker {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return rb.byRegion[region]
}

// state is whether the breaker is open and its consecutive failures.
func (b *breaker) state() (open bool, failures int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open, b.failures
}

// traffic wraps the delivery transport to count, per region address
// (host:port), the requests in flight and the last failure.
type traffic struct {
	next http.RoundTripper

	mu    sync.Mutex
	hosts map[string]*hostTraffic
}

type hostTraffic struct {
	inFlight  int
	lastErr   string
	lastErrAt time.Time
}

func newTraffic(next http.RoundTripper) *traffic {
	return &traffic{next: next, hosts: make(map[string]*hostTraffic)}
}

// RoundTrip counts the request in flight until its answer's headers
// arrive, and records a failure.
func (t *traffic) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	t.mu.Lock()
	h := t.hosts[host]
	if h == nil {
		h = &hostTraffic{}
		t.hosts[host] = h
	}
	h.inFlight++
	t.mu.Unlock()
	resp, err := t.next.RoundTrip(req)
	failure := ""
	switch {
	case err != nil && errors.Is(err, context.Canceled):
		// The drainer stopped or lost a lease: not the region's failure.
	case err != nil:
		failure = trafficError(err)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		failure = "region answered " + strconv.Itoa(resp.StatusCode)
	}
	t.mu.Lock()
	h.inFlight--
	if failure != "" {
		h.lastErr, h.lastErrAt = failure, time.Now()
	}
	t.mu.Unlock()
	return resp, err
}

// trafficError describes a transport failure as deliver.go does:
// "timeout", or the error without any URL, at most 300 bytes.
func trafficError(err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout"
	}
	return safeError(err)
}

// CloseIdleConnections passes on to the wrapped transport, which
// http.Client.CloseIdleConnections reaches through this one.
func (t *traffic) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// host is what was seen of one address.
func (t *traffic) host(host string) (inFlight int, lastErr string, lastErrAt time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h := t.hosts[host]; h != nil {
		return h.inFlight, h.lastErr, h.lastErrAt
	}
	return 0, "", time.Time{}
}

// console sets up the operator console's parts: the pauses from the
// store, the history when DeliveredRetention is set, and the traffic
// counters around the delivery transport.
func (d *Drainer) console(st Store) {
	d.pauses = &pauses{}
	if src, ok := st.(pauseSource); ok {
		d.pauses.src = src
	}
	if d.cfg.DeliveredRetention > 0 {
		if h, ok := st.(historian); ok {
			d.history = h
		} else {
			d.log.Error("delivered_retention is set but the store keeps no history; delivered payloads are deleted")
		}
	}
	d.traffic = newTraffic(d.client.Transport)
	d.client.Transport = d.traffic
}
