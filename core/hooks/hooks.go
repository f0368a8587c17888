// Package hooks is stepwise's tool registry: it implements core.Tools over
// a set of named hooks, and provides the built-in local hooks echo, print
// and webhook (outbound HTTP through core/egress, with the call's
// idempotency key). Remote hooks described by OpenAPI documents join the
// registry in a later release.
package hooks

import (
	"context"
	"sort"

	"github.com/stepwise-run/stepwise/core"
)

// Hook is a named provider of one or more tools.
type Hook interface {
	// Name is the hook's name, as chains refer to it.
	Name() string
	// Tools lists the tools the hook offers.
	Tools(ctx context.Context) ([]core.Tool, error)
	// Call runs one of the hook's tools; call.Tool is empty or the name of
	// one of Tools.
	Call(ctx context.Context, call core.HookCall) (core.Value, error)
}

// Registry serves a fixed set of hooks through the core.Tools port.
type Registry struct {
	hooks map[string]Hook
}

var _ core.Tools = (*Registry)(nil)

// NewRegistry returns a registry of the given hooks; a later hook with the
// same name as an earlier one replaces it.
func NewRegistry(hooks ...Hook) *Registry {
	r := &Registry{hooks: make(map[string]Hook, len(hooks))}
	for _, h := range hooks {
		r.hooks[h.Name()] = h
	}
	return r
}

// Hooks implements core.Tools.
func (r *Registry) Hooks(context.Context) ([]string, error) {
	names := make([]string, 0, len(r.hooks))
	for n := range r.hooks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// ToolsOf implements core.Tools.
func (r *Registry) ToolsOf(ctx context.Context, hook string) ([]core.Tool, error) {
	h, err := r.hook(hook)
	if err != nil {
		return nil, err
	}
	return h.Tools(ctx)
}

// Call implements core.Tools.
func (r *Registry) Call(ctx context.Context, call core.HookCall) (core.Value, error) {
	h, err := r.hook(call.Hook)
	if err != nil {
		return core.Value{}, err
	}
	if call.Tool != "" {
		tools, err := h.Tools(ctx)
		if err != nil {
			return core.Value{}, err
		}
		found := false
		for _, t := range tools {
			found = found || t.Function.Name == call.Tool
		}
		if !found {
			return core.Value{}, core.Errorf(core.ENOTFOUND, "hook %q has no tool %q", call.Hook, call.Tool)
		}
	}
	return h.Call(ctx, call)
}

func (r *Registry) hook(name string) (Hook, error) {
	h, ok := r.hooks[name]
	if !ok {
		return nil, core.Errorf(core.ENOTFOUND, "no hook named %q", name)
	}
	return h, nil
}
