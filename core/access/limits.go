package access

import (
	"fmt"
	"math"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// Limits bound a key's or a tenant's use of the models: spend per window,
// requests and tokens per minute. A zero field sets no bound.
type Limits struct {
	// Spend caps the cost of the calls in each of its windows.
	Spend []Spend `json:"spend,omitempty"`
	// RequestsPerMinute caps the calls made in one calendar minute.
	RequestsPerMinute int64 `json:"requestsPerMinute,omitempty"`
	// TokensPerMinute caps the tokens (in and out) used in one calendar
	// minute; a call reserves its worst case.
	TokensPerMinute int64 `json:"tokensPerMinute,omitempty"`
}

// Spend caps the cost, in US dollars, of the calls in one window.
type Spend struct {
	// Window is "day" or "month" (calendar, UTC), or a duration such as
	// "6h" (windows of that length, aligned as time.Truncate aligns: a
	// length that divides a day starts its windows at midnight UTC).
	Window string  `json:"window"`
	USD    float64 `json:"usd"`
}

// Check refuses limits that cannot be kept, naming the field under at.
func (l *Limits) Check(at string) error {
	for i, s := range l.Spend {
		if _, err := windowOf(s.Window); err != nil {
			return core.Errorf(core.EINVALID, "%s.spend[%d].window: %v", at, i, err)
		}
		if !(s.USD > 0) || s.USD > 1e9 || math.IsInf(s.USD, 0) {
			return core.Errorf(core.EINVALID, "%s.spend[%d].usd: want a positive amount up to 1e9", at, i)
		}
	}
	if l.RequestsPerMinute < 0 {
		return core.Errorf(core.EINVALID, "%s.requestsPerMinute: want 0 (no limit) or more", at)
	}
	if l.TokensPerMinute < 0 {
		return core.Errorf(core.EINVALID, "%s.tokensPerMinute: want 0 (no limit) or more", at)
	}
	return nil
}

// Window is one budget window: its name in counter ids, and where the one
// holding an instant starts and ends.
type Window struct {
	name string
	d    time.Duration // 0 for the calendar windows
}

// windowOf parses a Spend window.
func windowOf(s string) (Window, error) {
	switch s {
	case "day", "month":
		return Window{name: s}, nil
	case "minute":
		return Window{name: s, d: time.Minute}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Minute || d > 366*24*time.Hour {
		return Window{}, fmt.Errorf("%q: want day, month or a duration from 1m to 8784h", s)
	}
	return Window{name: d.String(), d: d}, nil
}

// MustWindow is windowOf for a window known to be valid.
func MustWindow(s string) Window {
	w, err := windowOf(s)
	if err != nil {
		panic(err)
	}
	return w
}

// Bounds returns where the window holding t starts and ends, in UTC.
func (w Window) Bounds(t time.Time) (start, end time.Time) {
	t = t.UTC()
	switch {
	case w.name == "day":
		start = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 1)
	case w.name == "month":
		start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	start = t.Truncate(w.d)
	return start, start.Add(w.d)
}

// Name is the window's name in counter ids.
func (w Window) Name() string { return w.name }
