package coretest

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Latencies makes b.N calls from the given number of concurrent clients,
// reports requests per second and the p50 and p99 of what the calls timed
// (each returns its own duration, so that it may time a part of itself,
// such as the first token), and returns them. Benchmarks comparing a
// path with the direct one run both through it in the same run.
func Latencies(b *testing.B, clients int, call func() (time.Duration, error)) (p50, p99 time.Duration) {
	b.Helper()
	var (
		mu    sync.Mutex
		times = make([]time.Duration, 0, b.N)
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Go(func() {
			local := make([]time.Duration, 0, 64)
			for next.Add(1) <= int64(b.N) {
				d, err := call()
				if err != nil {
					b.Error(err)
					return
				}
				local = append(local, d)
			}
			mu.Lock()
			times = append(times, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if len(times) == 0 {
		return 0, 0
	}
	slices.Sort(times)
	p50, p99 = times[len(times)*50/100], times[min(len(times)-1, len(times)*99/100)]
	b.ReportMetric(float64(len(times))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(p50)/1e3, "p50-µs")
	b.ReportMetric(float64(p99)/1e3, "p99-µs")
	return p50, p99
}

// Timed wraps a call that does not time itself for Latencies.
func Timed(call func() error) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		t0 := time.Now()
		err := call()
		return time.Since(t0), err
	}
}
