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

// listing is one fetch of a backend's model list. ready is closed when the
// fetch has finished; infos, names and err are written under Router.mu
// before that.
type listing struct {
	ready chan struct{}
	done  bool
	infos []ModelInfo
	names map[string]string // canonical name → name as the backend spells it
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
	r.mu.Lock()
	for i, l := range fresh {
		r.listings[i] = l
		if l.err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", r.backends[i].Name, l.err))
		}
	}
	r.mu.Unlock()
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
		r.mu.Lock()
		r.listings[i] = l
		r.mu.Unlock()
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
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Listing, len(r.backends))
	for i, b := range r.backends {
		out[i].ID = b.ID
		if l := r.listings[i]; l != nil && l.done {
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
		key := canonical(m.Name)
		if _, dup := names[key]; !dup {
			names[key] = m.Name
		}
	}
	r.mu.Lock()
	l.done = true
	if err != nil {
		l.err = err
	} else {
		l.infos, l.names = infos, names
	}
	r.mu.Unlock()
	close(l.ready)
}

// listTimeout bounds one fetch of a backend's model list.
const listTimeout = 30 * time.Second

// listingOf returns the listing of backend i, finished and successful,
// fetching it if no listing is cached or the cached attempt failed. A
// finished listing is never changed, so its fields may be read without
// Router.mu. Concurrent requests share one
// fetch rather than each listing the backend. The fetch runs on its own
// context, detached from the request that started it, so that a caller
// giving up does not fail the listing for every other caller waiting on it.
func (r *Router) listingOf(ctx context.Context, i int) (*listing, error) {
	r.mu.Lock()
	l := r.listings[i]
	if l == nil || (l.done && l.err != nil) {
		l = &listing{ready: make(chan struct{})}
		r.listings[i] = l
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), listTimeout)
			defer cancel()
			r.fetch(fctx, i, l)
		}()
	}
	r.mu.Unlock()
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
