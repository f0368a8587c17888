package mem_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stepwise-run/stepwise/core/coretest"
	"github.com/stepwise-run/stepwise/events"
	"github.com/stepwise-run/stepwise/infra/mem"
)

func TestPublisher(t *testing.T) {
	coretest.PublisherSuite(t, func(*testing.T) coretest.PublisherHarness {
		bus := mem.NewBus()
		var mu sync.Mutex
		var got []events.Envelope
		bus.Subscribe(func(ev events.Envelope) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, ev)
		})
		return coretest.PublisherHarness{Publisher: bus, Receive: func(context.Context, int) ([]events.Envelope, error) {
			// Delivery is synchronous: what arrived is all there is.
			mu.Lock()
			defer mu.Unlock()
			out := got
			got = nil
			return out, nil
		}}
	})
}
