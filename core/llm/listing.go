package llm

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// Cache keeps what routers learn from their backends and their requests:
// each backend's model listing, by backend ID, and the round-robin turn of
// each model. It is separate from the Router for the same reason as
// Health: a router rebuilt because the configuration changed keeps the
// listings of the backends it shares with the router before it, and
// continues its rotations.
//
// A listing belongs to the client that fetched it. When a backend's client
// changes (another URL, type or key), Forget its ID before building the
// next router, so that the new router lists it afresh; routers built before
// keep the listing they had, so that the calls in flight on them neither
// read nor replace the new client's. A Cache is safe for concurrent use and
// may be shared by several routers.
type Cache struct {
	mu    sync.Mutex
	slots map[string]*slot // by backend ID
	turns map[string]int   // round-robin counters by model key
}

// slot holds the listing of one backend as one client fetched it; the
// routers built while the backend kept that client share it.
type slot struct {
	l *listing // nil until first needed; guarded by Cache.mu
}

// NewCache returns an empty Cache.
func NewCache() *Cache {
	return &Cache{slots: make(map[string]*slot), turns: make(map[string]int)}
}

// Forget drops the listing of the backend with the given ID from the
// routers built from now on: they list it again when they first need it.
// Call it when the backend's client changes or the backend is gone.
func (c *Cache) Forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.slots, id)
}

// slot returns the slot of backend id, creating it.
func (c *Cache) slot(id string) *slot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.slots[id]
	if !ok {
		s = &slot{}
		c.slots[id] = s
	}
	return s
}

// listing is one fetch of a backend's model list. ready is closed when the
// fetch has finished; infos, names and err are written under Cache.mu
// before that.
type listing struct {
	ready chan struct{}
	done  bool
	infos []ModelInfo
	names map[string]string // model key → name as the backend spells it
	err   error
}

// Listing is a backend's model list as the router knows it.
type Listing struct {
	// ID is the backend's ID.
	ID string
	// Models are the models the backend lists, in its order.
	Models []ModelInfo
	// Err is why the listing could not be fetched; Models is nil then.
	Err error
}

// Refresh lists the models of every backend again, replacing the cached
// listings. Backends are asked concurrently. A backend whose listing fails
// loses its cached listing (and is asked again when next needed); the error
// names every such backend.
func (r *Router) Refresh(ctx context.Context) error {
	fresh := make([]*listing, len(r.backends))
	var wg sync.WaitGroup
	for i := range r.backends {
		fresh[i] = &listing{ready: make(chan struct{})}
		wg.Go(func() { r.fetch(ctx, i, fresh[i]) })
	}
	wg.Wait()

	var failed []string
	r.cache.mu.Lock()
	for i, l := range fresh {
		r.slots[i].l = l
		if l.err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", r.backends[i].Name, l.err))
		}
	}
	r.cache.mu.Unlock()
	if len(failed) > 0 {
		return core.Errorf(core.EUNAVAILABLE, "listing models failed: %s", strings.Join(failed, "; "))
	}
	return nil
}

// RefreshBackend lists the models of the backend with the given ID again,
// replacing its cached listing, as after a model was pulled onto it. An
// unknown ID is ENOTFOUND.
func (r *Router) RefreshBackend(ctx context.Context, id string) error {
	for i, b := range r.backends {
		if b.ID != id {
			continue
		}
		l := &listing{ready: make(chan struct{})}
		r.fetch(ctx, i, l)
		r.cache.mu.Lock()
		r.slots[i].l = l
		r.cache.mu.Unlock()
		if l.err != nil {
			return core.WrapError(core.ErrorCode(l.err), l.err, "%s: listing models failed", b.Name)
		}
		return nil
	}
	return core.Errorf(core.ENOTFOUND, "no backend has id %q", id)
}

// Listings returns every backend's listing, in the order of the backends:
// the cached one, or a fresh fetch (made concurrently) for a backend not
// listed yet or whose last listing failed.
func (r *Router) Listings(ctx context.Context) []Listing {
	out := make([]Listing, len(r.backends))
	var wg sync.WaitGroup
	for i, b := range r.backends {
		out[i].ID = b.ID
		wg.Go(func() {
			l, err := r.listingOf(ctx, i)
			if err != nil {
				out[i].Err = err
				return
			}
			out[i].Models = slices.Clone(l.infos)
		})
	}
	wg.Wait()
	return out
}

// Cached returns every backend's listing as last fetched, in the order of
// the backends, without asking any backend: after Refresh it is what the
// refresh found. A backend not listed yet, or being listed, has neither
// Models nor Err.
func (r *Router) Cached() []Listing {
	r.cache.mu.Lock()
	defer r.cache.mu.Unlock()
	out := make([]Listing, len(r.backends))
	for i, b := range r.backends {
		out[i].ID = b.ID
		if l := r.slots[i].l; l != nil && l.done {
			out[i].Models, out[i].Err = slices.Clone(l.infos), l.err
		}
	}
	return out
}

// fetch lists the models of backend i into l and marks l finished.
func (r *Router) fetch(ctx context.Context, i int, l *listing) {
	infos, err := r.backends[i].Provider.Models(ctx)
	if err != nil {
		r.health.listingFailed(r.backends[i].ID, err)
	}
	names := make(map[string]string, len(infos))
	for _, m := range infos {
		key := ModelKey(m.Name)
		if _, dup := names[key]; !dup {
			names[key] = m.Name
		}
	}
	r.cache.mu.Lock()
	l.done = true
	if err != nil {
		l.err = err
	} else {
		l.infos, l.names = infos, names
	}
	r.cache.mu.Unlock()
	close(l.ready)
}

// listTimeout bounds one fetch of a backend's model list.
const listTimeout = 30 * time.Second

// listingOf returns the listing of backend i, finished and successful,
// fetching it if no listing is cached or the cached attempt failed. A
// finished listing is never changed, so its fields may be read without
// Cache.mu. Concurrent requests (of every router sharing the slot) share
// one fetch rather than each listing the backend. The fetch runs on its own
// context, detached from the request that started it, so that a caller
// giving up does not fail the listing for every other caller waiting on it.
func (r *Router) listingOf(ctx context.Context, i int) (*listing, error) {
	r.cache.mu.Lock()
	l := r.slots[i].l
	if l == nil || (l.done && l.err != nil) {
		l = &listing{ready: make(chan struct{})}
		r.slots[i].l = l
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), listTimeout)
			defer cancel()
			r.fetch(fctx, i, l)
		}()
	}
	r.cache.mu.Unlock()
	select {
	case <-l.ready:
		if l.err != nil {
			return nil, l.err
		}
		return l, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
