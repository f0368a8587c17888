package coretest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// CounterSuite checks a core.Counters: a counter starts at 0 and adds up,
// a positive delta past the limit is refused with ELIMIT and changes
// nothing, settling (a delta of 0 or less) always applies, counters of
// two tenants or two ids are apart, and 200 racing reservations against a
// limit of 50 let exactly 50 through; AddCounters applies all its adds or,
// refused, none. newCounters must return an empty
// store and clean up with t.Cleanup.
func CounterSuite(t *testing.T, newCounters func(t *testing.T) core.Counters) {
	ctx := context.Background()
	expires := time.Now().Add(time.Hour)
	// add makes one add and returns the counter's value after it.
	add := func(c core.Counters, tenant, id string, delta, limit int64) (int64, error) {
		err := c.AddCounters(ctx, tenant, []core.CounterAdd{{ID: id, Delta: delta, Limit: limit, Expires: expires}})
		v, gerr := c.GetCounter(ctx, tenant, id)
		if err == nil {
			err = gerr
		}
		return v, err
	}

	t.Run("AddsUpFromZero", func(t *testing.T) {
		c := newCounters(t)
		if v, err := c.GetCounter(ctx, "acme", "spend/day/1"); err != nil || v != 0 {
			t.Fatalf("new counter = %d, %v; want 0", v, err)
		}
		for i, want := range []int64{5, 12, 12} {
			v, err := add(c, "acme", "spend/day/1", []int64{5, 7, 0}[i], core.NoLimit)
			if err != nil || v != want {
				t.Fatalf("add #%d = %d, %v; want %d", i, v, err, want)
			}
		}
		if v, err := c.GetCounter(ctx, "acme", "spend/day/1"); err != nil || v != 12 {
			t.Errorf("counter = %d, %v; want 12", v, err)
		}
	})

	t.Run("LimitRefusesAndKeepsTheValue", func(t *testing.T) {
		c := newCounters(t)
		if _, err := add(c, "acme", "r", 8, 10); err != nil {
			t.Fatal(err)
		}
		v, err := add(c, "acme", "r", 3, 10)
		if core.ErrorCode(err) != core.ELIMIT {
			t.Fatalf("add past the limit = %d, %v; want ELIMIT", v, err)
		}
		if v, _ := c.GetCounter(ctx, "acme", "r"); v != 8 {
			t.Errorf("after a refused add the counter is %d, want 8", v)
		}
		if v, err := add(c, "acme", "r", 2, 10); err != nil || v != 10 {
			t.Errorf("add up to the limit = %d, %v; want 10", v, err)
		}
		if _, err := add(c, "acme", "fresh", 11, 10); core.ErrorCode(err) != core.ELIMIT {
			t.Errorf("a first add past the limit: %v, want ELIMIT", err)
		}
		if v, _ := c.GetCounter(ctx, "acme", "fresh"); v != 0 {
			t.Errorf("a refused first add left %d", v)
		}
	})

	t.Run("SettlingAlwaysApplies", func(t *testing.T) {
		c := newCounters(t)
		if _, err := add(c, "acme", "s", 10, 10); err != nil {
			t.Fatal(err)
		}
		// A reservation of 10 settles at 4: -6, whatever the limit.
		if v, err := add(c, "acme", "s", -6, 0); err != nil || v != 4 {
			t.Errorf("settle = %d, %v; want 4", v, err)
		}
	})

	t.Run("TenantsAndIDsAreApart", func(t *testing.T) {
		c := newCounters(t)
		for _, k := range []struct{ tenant, id string }{{"acme", "x"}, {"globex", "x"}, {"acme", "x/2"}, {"acme", "y"}} {
			if _, err := add(c, k.tenant, k.id, 1, core.NoLimit); err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range []struct{ tenant, id string }{{"acme", "x"}, {"globex", "x"}, {"acme", "x/2"}} {
			if v, _ := c.GetCounter(ctx, k.tenant, k.id); v != 1 {
				t.Errorf("%s %s = %d, want 1", k.tenant, k.id, v)
			}
		}
	})

	t.Run("AddCountersAllOrNothing", func(t *testing.T) {
		c := newCounters(t)
		adds := []core.CounterAdd{{ID: "a", Delta: 5, Limit: 10, Expires: expires}, {ID: "b", Delta: 5, Limit: 4, Expires: expires}, {ID: "c", Delta: 1, Limit: 10, Expires: expires}}
		err := c.AddCounters(ctx, "acme", adds)
		var cl *core.CounterLimit
		if core.ErrorCode(err) != core.ELIMIT || !errors.As(err, &cl) || cl.Index != 1 || cl.ID != "b" {
			t.Fatalf("AddCounters = %v; want ELIMIT naming add 1 (b)", err)
		}
		for _, id := range []string{"a", "b", "c"} {
			if v, _ := c.GetCounter(ctx, "acme", id); v != 0 {
				t.Errorf("after a refused AddCounters %s = %d, want 0", id, v)
			}
		}
		adds[1].Limit = 5
		if err := c.AddCounters(ctx, "acme", adds); err != nil {
			t.Fatal(err)
		}
		if err := c.AddCounters(ctx, "acme", []core.CounterAdd{{ID: "a", Delta: -3, Expires: expires}, {ID: "c", Delta: 2, Limit: core.NoLimit, Expires: expires}}); err != nil {
			t.Fatal(err)
		}
		for id, want := range map[string]int64{"a": 2, "b": 5, "c": 3} {
			if v, _ := c.GetCounter(ctx, "acme", id); v != want {
				t.Errorf("%s = %d, want %d", id, v, want)
			}
		}
	})

	t.Run("RacingReservationsNeverPassTheLimit", func(t *testing.T) {
		c := newCounters(t)
		const racers, limit = 200, 50
		var (
			wg      sync.WaitGroup
			granted atomic.Int64
			start   = make(chan struct{})
		)
		for range racers {
			wg.Go(func() {
				<-start
				_, err := add(c, "acme", "race", 1, limit)
				switch core.ErrorCode(err) {
				case "":
					granted.Add(1)
				case core.ELIMIT:
				default:
					t.Errorf("add: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		v, err := c.GetCounter(ctx, "acme", "race")
		if err != nil || granted.Load() != limit || v != limit {
			t.Errorf("%d of %d granted, counter %d (%v); want exactly %d", granted.Load(), racers, v, err, limit)
		}
	})
}
