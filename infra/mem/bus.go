package mem

import (
	"context"
	"slices"
	"sync"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/events"
)

// Bus is the in-process core.Publisher: it hands every published event to
// each subscriber, synchronously and in order, with the same validation
// and limits as EventBridge so that what passes here passes on AWS. It is
// safe for concurrent use.
type Bus struct {
	mu   sync.Mutex
	subs []func(events.Envelope)
}

// NewBus returns a Bus with no subscribers.
func NewBus() *Bus { return &Bus{} }

// Subscribe adds fn, which receives every event published from now on. It
// must not block for long and must not call Publish.
func (b *Bus) Subscribe(fn func(events.Envelope)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs = append(b.subs, fn)
}

// Publish validates evs (EINVALID, publishing nothing, for any invalid
// one) and hands each to every subscriber. A context that has ended
// publishes nothing (ETIMEOUT).
func (b *Bus) Publish(ctx context.Context, evs []events.Envelope) error {
	if err := ctx.Err(); err != nil {
		return core.WrapError(core.ETIMEOUT, err, "mem: publish %d events", len(evs))
	}
	if err := core.ValidateEvents(evs); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ev := range evs {
		ev.Data = slices.Clone(ev.Data)
		for _, fn := range b.subs {
			fn(ev)
		}
	}
	return nil
}
