package core

import (
	"context"
	"time"
)

// Counters is the port that keeps metered amounts: the spend, requests and
// tokens that budgets and rate limits count. Every counter belongs to a
// tenant; its id names its window ("spend/key_1/day/2026-12-07"), so a new
// window is a new counter and an old one is only kept for reading.
// Implementations must be safe for concurrent use; each add is decided
// atomically in the store (a transaction locally, a conditional update on
// DynamoDB), so that callers racing for the last of a budget cannot
// together overspend it.
type Counters interface {
	// AddCounters makes every add of adds, or none. An add adds Delta to
	// the counter ID, which starts at 0. A positive delta that would take
	// its counter past Limit refuses the whole call with ELIMIT wrapping a
	// *CounterLimit that says which; a delta of 0 or less (settling a
	// reservation) always applies. Expires is when the counter's window is
	// over: the store may forget the counter some time after it
	// (DynamoDB's TTL). Locally it is one
	// transaction, so a call bound by several limits costs one write; an
	// adapter may instead apply the adds one by one and undo the earlier
	// ones on a refusal (DynamoDB, whose transactions fail when they race
	// for an item).
	AddCounters(ctx context.Context, tenant string, adds []CounterAdd) error
	// GetCounter returns the counter's value, 0 for one that does not
	// exist.
	GetCounter(ctx context.Context, tenant, id string) (int64, error)
}

// CounterAdd is one add of AddCounters.
type CounterAdd struct {
	ID           string
	Delta, Limit int64
	Expires      time.Time
}

// CounterLimit says which add of an AddCounters call its limit refused.
type CounterLimit struct {
	Index int
	ID    string
}

func (c *CounterLimit) Error() string { return "counter " + c.ID + " is at its limit" }

// LimitErr is the ELIMIT of add i of adds.
func LimitErr(adds []CounterAdd, i int) error {
	a := adds[i]
	return WrapError(ELIMIT, &CounterLimit{Index: i, ID: a.ID}, "%d more would pass the limit of %d", a.Delta, a.Limit)
}

// NoLimit is the limit of an AddCounter that only counts.
const NoLimit int64 = 1<<63 - 1
