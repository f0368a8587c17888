// Package hooks is stepwise's tool registry: it implements core.Tools over
// a set of named hooks, and provides the built-in local hooks echo, print
// and webhook (outbound HTTP through core/egress, with the call's
// idempotency key). A tenant's remote hooks, described by OpenAPI
// documents, join the registry through a Source (package hooks/remote).
package hooks

import (
	"context"
	"slices"
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

// Source provides the hooks a tenant has of its own (remote hooks), beside
// the built-in ones every tenant has.
type Source interface {
	// HookNames returns the names of tenant's hooks.
	HookNames(ctx context.Context, tenant string) ([]string, error)
	// Hook returns tenant's hook of that name; ENOTFOUND if it has none.
	Hook(ctx context.Context, tenant, name string) (Hook, error)
}

// Registry serves a fixed set of built-in hooks and, per tenant, the hooks
// of its sources through the core.Tools port. A built-in hook's name
// hides a source's hook of the same name.
type Registry struct {
	hooks   map[string]Hook
	sources []Source
}

var _ core.Tools = (*Registry)(nil)

// NewRegistry returns a registry of the given built-in hooks and sources;
// a later hook with the same name as an earlier one replaces it.
func NewRegistry(sources []Source, hooks ...Hook) *Registry {
	r := &Registry{hooks: make(map[string]Hook, len(hooks)), sources: sources}
	for _, h := range hooks {
		r.hooks[h.Name()] = h
	}
	return r
}

// Builtin reports whether name is a built-in hook's.
func (r *Registry) Builtin(name string) bool {
	_, ok := r.hooks[name]
	return ok
}

// Hooks implements core.Tools.
func (r *Registry) Hooks(ctx context.Context, tenant string) ([]string, error) {
	names := make([]string, 0, len(r.hooks))
	for n := range r.hooks {
		names = append(names, n)
	}
	for _, s := range r.sources {
		more, err := s.HookNames(ctx, tenant)
		if err != nil {
			return nil, err
		}
		for _, n := range more {
			if !r.Builtin(n) {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return slices.Compact(names), nil
}

// ToolsOf implements core.Tools.
func (r *Registry) ToolsOf(ctx context.Context, tenant, hook string) ([]core.Tool, error) {
	h, err := r.hook(ctx, tenant, hook)
	if err != nil {
		return nil, err
	}
	return h.Tools(ctx)
}

// Call implements core.Tools.
func (r *Registry) Call(ctx context.Context, call core.HookCall) (core.Value, error) {
	h, err := r.hook(ctx, call.Tenant, call.Hook)
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

func (r *Registry) hook(ctx context.Context, tenant, name string) (Hook, error) {
	if h, ok := r.hooks[name]; ok {
		return h, nil
	}
	for _, s := range r.sources {
		h, err := s.Hook(ctx, tenant, name)
		if core.ErrorCode(err) == core.ENOTFOUND {
			continue
		}
		return h, err
	}
	return nil, core.Errorf(core.ENOTFOUND, "no hook named %q", name)
}
