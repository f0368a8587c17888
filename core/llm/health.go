package llm

import (
	"context"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// DefaultCooldown is how long a backend that failed stays behind the
// healthy ones when the router orders candidates.
const DefaultCooldown = 10 * time.Second

// Health records, per backend ID, how the backend's last calls went and how
// many calls it has in flight. It is separate from the Router so that it
// outlives one: a router rebuilt because the configuration changed still
// knows that a backend failed a second ago and how busy each one is. A
// Health is safe for concurrent use and may be shared by several routers.
type Health struct {
	cooldown time.Duration
	now      func() time.Time

	mu   sync.Mutex
	byID map[string]*BackendHealth
}

// BackendHealth is what a Health knows of one backend.
type BackendHealth struct {
	// InFlight counts the calls the backend is answering now.
	InFlight int
	// LastError is the error of the backend's last failure, "" if it
	// never failed.
	LastError string
	// LastFailure and LastSuccess are when a call (or a model listing)
	// last failed because the backend was down or failing, and when a
	// call last got an answer from it; zero if never.
	LastFailure, LastSuccess time.Time
}

// Failing reports whether the backend's last outcome was a failure.
func (b BackendHealth) Failing() bool { return b.LastFailure.After(b.LastSuccess) }

// NewHealth returns an empty Health. A backend that failed within cooldown
// (DefaultCooldown when 0) and has not answered since is tried after the
// healthy ones; now is the clock (time.Now when nil).
func NewHealth(cooldown time.Duration, now func() time.Time) *Health {
	if cooldown <= 0 {
		cooldown = DefaultCooldown
	}
	if now == nil {
		now = time.Now
	}
	return &Health{cooldown: cooldown, now: now, byID: make(map[string]*BackendHealth)}
}

// Of returns what is known of the backend with the given ID; the zero
// value for a backend never called.
func (h *Health) Of(id string) BackendHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b, ok := h.byID[id]; ok {
		return *b
	}
	return BackendHealth{}
}

// entry returns the record of id, creating it. h.mu must be held.
func (h *Health) entry(id string) *BackendHealth {
	b, ok := h.byID[id]
	if !ok {
		b = &BackendHealth{}
		h.byID[id] = b
	}
	return b
}

// cooling reports whether backend id failed within the cooldown and has
// not answered since.
func (h *Health) cooling(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.byID[id]
	return ok && b.Failing() && h.now().Sub(b.LastFailure) < h.cooldown
}

// inFlight returns the number of calls backend id is answering.
func (h *Health) inFlight(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b, ok := h.byID[id]; ok {
		return b.InFlight
	}
	return 0
}

// begin counts a call to backend id as in flight.
func (h *Health) begin(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.entry(id).InFlight++
}

// end records the outcome of a call begun with begin. Only errors that
// say something about the backend count: EUNAVAILABLE and ETIMEOUT (while
// the caller still waits) are failures; an answer, a missing model
// (ENOTFOUND) and a refused request (EINVALID) show it alive; anything
// else, such as the caller giving up, records nothing.
func (h *Health) end(ctx context.Context, id string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.entry(id)
	b.InFlight--
	if ctx.Err() != nil {
		return
	}
	switch core.ErrorCode(err) {
	case "", core.ENOTFOUND, core.EINVALID:
		b.LastSuccess = h.now()
	case core.EUNAVAILABLE, core.ETIMEOUT:
		b.LastFailure, b.LastError = h.now(), err.Error()
	}
}

// listingFailed records that listing backend id's models failed with err,
// when err says the backend is down or failing. A listing that succeeds
// records nothing: a server can list its models while failing every
// generation, and must not leave the cooldown for that.
func (h *Health) listingFailed(id string, err error) {
	if core.ErrorCode(err) != core.EUNAVAILABLE {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.entry(id)
	b.LastFailure, b.LastError = h.now(), err.Error()
}
