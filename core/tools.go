package core

import "context"

// Tools is the port through which tasks reach hooks: named providers of one
// or more tools (built-in ones such as echo and print, and a tenant's
// remote hooks described by OpenAPI documents).
type Tools interface {
	// Hooks returns the names of every hook available to tenant, sorted.
	Hooks(ctx context.Context, tenant string) ([]string, error)
	// ToolsOf returns the tools a hook of tenant offers. ENOTFOUND if there
	// is no such hook.
	ToolsOf(ctx context.Context, tenant, hook string) ([]Tool, error)
	// Call runs one tool of a hook. ENOTFOUND for an unknown hook or tool.
	Call(ctx context.Context, call HookCall) (Value, error)
}

// HookCall is one call of a hook's tool.
type HookCall struct {
	// Tenant owns the execution making the call: its hooks are the ones
	// found.
	Tenant string
	// Hook and Tool name what to call; an empty Tool means the hook's
	// only (or first) tool.
	Hook string
	Tool string
	// Input is the task input for a hook task, or the decoded arguments
	// (type json) for a tool call made by a model.
	Input Value
	// Args are the static arguments from the task definition.
	Args map[string]string
	// IdempotencyKey is "<execution>/<step>/<call>": the same for every
	// attempt to make the same call, so a remote side can deduplicate.
	IdempotencyKey string
}
