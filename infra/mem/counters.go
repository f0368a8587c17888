package mem

import (
	"context"

	"github.com/stepwise-run/stepwise/core"
)

// AddCounters implements core.Counters. Counters are kept for the life
// of the store: a test's or a run's windows are few.
func (s *Store) AddCounters(_ context.Context, tenant string, adds []core.CounterAdd) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[key]int64, len(adds))
	for i, a := range adds {
		k := key{tenant, a.ID}
		v, ok := next[k]
		if !ok {
			v = s.counters[k]
		}
		v += a.Delta
		if a.Delta > 0 && v > a.Limit {
			return core.LimitErr(adds, i)
		}
		next[k] = v
	}
	for k, v := range next {
		s.counters[k] = v
	}
	return nil
}

// GetCounter implements core.Counters.
func (s *Store) GetCounter(_ context.Context, tenant, id string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters[key{tenant, id}], nil
}
