package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Result is one measured run.
type Result struct {
	Requests int
	Errors   int
	Elapsed  time.Duration
	// Latencies, sorted. In open-loop runs they are measured from the
	// intended send time, so time spent queued behind a slow server
	// counts (no coordinated omission).
	Latencies []time.Duration
	// Rate is the open-loop target rate (0 for closed-loop runs).
	Rate float64
}

// RPS is the completed requests per second.
func (r Result) RPS() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// P is the q-quantile latency (q in [0,1]).
func (r Result) P(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(q * float64(len(r.Latencies)))
	if i >= len(r.Latencies) {
		i = len(r.Latencies) - 1
	}
	return r.Latencies[i]
}

// Client is an HTTP/1.1 keep-alive client with one connection per worker.
func Client(concurrency int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        concurrency * 2,
			MaxIdleConnsPerHost: concurrency * 2,
			MaxConnsPerHost:     concurrency * 2,
			DisableCompression:  true,
			IdleConnTimeout:     time.Minute,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// URLs picks the URL of the i-th request.
type URLs func(i uint64) string

func send(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// ClosedLoop runs concurrency workers that send back to back for d: the
// maximum throughput at that concurrency.
func ClosedLoop(ctx context.Context, c *http.Client, concurrency int, d time.Duration, urls URLs) Result {
	var seq atomic.Uint64
	var wg sync.WaitGroup
	lat := make([][]time.Duration, concurrency)
	errs := make([]int, concurrency)
	start := time.Now()
	deadline := start.Add(d)
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, 1<<14)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				err := send(ctx, c, urls(seq.Add(1)))
				if err != nil {
					errs[w]++
					continue
				}
				l = append(l, time.Since(t0))
			}
			lat[w] = l
		}()
	}
	wg.Wait()
	return merge(lat, errs, time.Since(start), 0)
}

// OpenLoop sends at a fixed rate for d, whatever the server does: the
// schedule fixes each request's intended send time and its latency is
// counted from then. Workers (concurrency of them) take requests off the
// schedule; when all are busy, requests wait and their wait counts.
func OpenLoop(ctx context.Context, c *http.Client, concurrency int, rate float64, d time.Duration, urls URLs) Result {
	total := int(rate * d.Seconds())
	queue := make(chan time.Time, total)
	var wg sync.WaitGroup
	var seq atomic.Uint64
	lat := make([][]time.Duration, concurrency)
	errs := make([]int, concurrency)
	start := time.Now()
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, total/concurrency+16)
			for intended := range queue {
				if ctx.Err() != nil {
					continue
				}
				if err := send(ctx, c, urls(seq.Add(1))); err != nil {
					errs[w]++
					continue
				}
				l = append(l, time.Since(intended))
			}
			lat[w] = l
		}()
	}
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; i < total && ctx.Err() == nil; {
		now := time.Now()
		for ; i < total; i++ {
			intended := start.Add(time.Duration(i) * interval)
			if intended.After(now) {
				break
			}
			queue <- intended
		}
		if i < total {
			time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		}
	}
	close(queue)
	wg.Wait()
	return merge(lat, errs, time.Since(start), rate)
}

func merge(lat [][]time.Duration, errs []int, elapsed time.Duration, rate float64) Result {
	r := Result{Elapsed: elapsed, Rate: rate}
	for i, l := range lat {
		r.Latencies = append(r.Latencies, l...)
		r.Errors += errs[i]
	}
	r.Requests = len(r.Latencies)
	slices.Sort(r.Latencies)
	return r
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }
