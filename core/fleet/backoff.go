package fleet

import (
	"fmt"
	"time"
)

// Failed pulls wait before they are tried again, twice as long after each
// failure, so that a model name with a typo in it, or a backend out of
// disk, costs a pull (and a log line) every half hour at worst rather than
// one every cycle.
const (
	// minRetryDelay is the first delay when the sync interval is shorter.
	minRetryDelay = 30 * time.Second
	// maxRetryDelay caps the delay.
	maxRetryDelay = 30 * time.Minute
)

// retryDelay is how long to wait after the failures-th failed pull in a
// row, given the first delay base: base, 2·base, 4·base, ... up to
// maxRetryDelay.
func retryDelay(base time.Duration, failures int) time.Duration {
	d := base
	for i := 1; i < failures && d < maxRetryDelay; i++ {
		d *= 2
	}
	return min(d, maxRetryDelay)
}

// retryBase is the first delay after a failed pull: the sync interval, or
// minRetryDelay if that is longer, so that a retry never comes sooner than
// the cycle that would have queued it anyway.
func (f *Fleet) retryBase() time.Duration { return max(f.cfg.SyncInterval, minRetryDelay) }

// retry is the state of a model whose pulls onto a backend fail: cleared
// when a pull succeeds, when the model no longer misses there, or when the
// user stops its download.
type retry struct {
	failures int       // failed pulls in a row
	next     time.Time // when the next pull may start
	err      string    // what the last one said
}

// String describes the failure for BackendState.Error.
func (r retry) String() string {
	return fmt.Sprintf("%s (attempt %d, next try at %s)", r.err, r.failures, r.next.Format(time.RFC3339))
}

// pairs maps a backend URL and a model key to a V. Empty
// inner maps are deleted, so a URL is in the map only if it has entries.
type pairs[V any] map[string]map[string]V

func (p pairs[V]) get(url, model string) (V, bool) {
	v, ok := p[url][model]
	return v, ok
}

func (p pairs[V]) set(url, model string, v V) {
	if p[url] == nil {
		p[url] = make(map[string]V)
	}
	p[url][model] = v
}

func (p pairs[V]) del(url, model string) {
	delete(p[url], model)
	if len(p[url]) == 0 {
		delete(p, url)
	}
}
