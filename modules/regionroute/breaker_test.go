package regionroute

import (
	"sync"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := &limiter{max: 2}
	first, second := l.acquire(), l.acquire()
	if !first || !second {
		t.Fatal("first two refused")
	}
	if l.acquire() {
		t.Fatal("third admitted over a cap of 2")
	}
	l.release()
	if !l.acquire() {
		t.Fatal("refused after a release")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := &limiter{max: 5}
	var wg sync.WaitGroup
	var mu sync.Mutex
	max, cur := 0, 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if !l.acquire() {
					continue
				}
				mu.Lock()
				cur++
				if cur > max {
					max = cur
				}
				mu.Unlock()
				mu.Lock()
				cur--
				mu.Unlock()
				l.release()
			}
		}()
	}
	wg.Wait()
	if max > 5 {
		t.Fatalf("%d in flight with a cap of 5", max)
	}
	if l.inflight.Load() != 0 {
		t.Fatalf("inflight %d after all released", l.inflight.Load())
	}
}

func TestBreakerWindow(t *testing.T) {
	base := time.Unix(1000, 0).UnixNano()
	b := &breaker{max: 3, window: int64(time.Minute)}
	b.start.Store(base)
	at := func(d time.Duration) int64 { return base + int64(d) }
	for i := range 3 {
		b.fail(at(time.Duration(i) * time.Second))
	}
	if !b.allow(at(5 * time.Second)) {
		t.Fatal("open at 3 failures with max 3: apigw opens above max")
	}
	b.fail(at(6 * time.Second))
	if b.allow(at(7 * time.Second)) {
		t.Fatal("closed at 4 failures with max 3")
	}
	if b.allow(at(59 * time.Second)) {
		t.Fatal("closed before the window turned")
	}
	if !b.allow(at(61 * time.Second)) {
		t.Fatal("still open after the window turned")
	}
	b.fail(at(62 * time.Second))
	if !b.allow(at(63 * time.Second)) {
		t.Fatal("old failures counted in the new window")
	}
}
