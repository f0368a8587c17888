package mem

import (
	"context"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// AddCounter implements core.Counters. Counters are kept for the life of
// the store: a test's or a run's windows are few.
func (s *Store) AddCounter(_ context.Context, tenant, id string, delta, limit int64, _ time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{tenant, id}
	v := s.counters[k] + delta
	if delta > 0 && v > limit {
		return v - delta, core.Errorf(core.ELIMIT, "counter %s is at %d: %d more would pass its limit of %d", id, v-delta, delta, limit)
	}
	s.counters[k] = v
	return v, nil
}

// AddCounters implements core.Counters.
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
