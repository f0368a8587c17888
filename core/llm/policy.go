package llm

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/stepwise-run/stepwise/core"
)

// CheckPolicy returns nil when name is one of core.RoutingPolicies or ""
// (the router's default), and an EINVALID error naming the valid policies
// otherwise.
func CheckPolicy(name string) error {
	if name == "" || slices.Contains(core.RoutingPolicies(), name) {
		return nil
	}
	return core.Errorf(core.EINVALID, "routing_policy: %q is not one of %s",
		name, strings.Join(core.RoutingPolicies(), ", "))
}

// order returns the candidates for model want (indexes into r.backends, in
// the given order) in the order policy tries them. Whatever the policy,
// backends in their cooldown after a failure go after the others, keeping
// the policy's order within each part: the first healthy backend is tried
// first, and a failing one still serves when nothing else can.
func (r *Router) order(policy, want string, cands []int) []int {
	out := slices.Clone(cands)
	switch policy {
	case core.PolicyRoundRobin:
		if len(out) > 1 {
			k := r.turn(want) % len(out)
			out = append(slices.Clone(cands[k:]), cands[:k]...)
		}
	case core.PolicyRandom:
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	case core.PolicyLeastBusy:
		busy := make(map[int]int, len(out))
		for _, i := range out {
			busy[i] = r.health.inFlight(r.backends[i].ID)
		}
		slices.SortStableFunc(out, func(a, b int) int { return cmp.Compare(busy[a], busy[b]) })
	}
	cooling := make(map[int]bool, len(out))
	for _, i := range out {
		cooling[i] = r.health.cooling(r.backends[i].ID)
	}
	slices.SortStableFunc(out, func(a, b int) int {
		switch {
		case cooling[a] == cooling[b]:
			return 0
		case cooling[a]:
			return 1
		}
		return -1
	})
	return out
}

// turn returns the number of earlier round-robin requests for model want,
// which is where this request's rotation starts, and counts this one. The
// counters live in the router's Cache, so a rebuilt router continues the
// rotation. They exist only for models that were served (see servedTurn),
// so that requests for names no backend has do not grow the map.
func (r *Router) turn(want string) int {
	r.cache.mu.Lock()
	defer r.cache.mu.Unlock()
	n, ok := r.cache.turns[want]
	if ok {
		r.cache.turns[want] = n + 1
	}
	return n
}

// servedTurn starts the round-robin counter of model want once a request
// for it has been served.
func (r *Router) servedTurn(want string) {
	r.cache.mu.Lock()
	defer r.cache.mu.Unlock()
	if _, ok := r.cache.turns[want]; !ok {
		r.cache.turns[want] = 1
	}
}
