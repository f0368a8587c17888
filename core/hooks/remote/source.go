package remote

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/egress"
	"github.com/stepwise-run/stepwise/core/hooks"
	"github.com/stepwise-run/stepwise/core/hooks/internal/reply"
)

// SpecTTL is how long a fetched document is used before it is asked for
// again (with its ETag, so an unchanged one is not sent again).
const SpecTTL = 5 * time.Minute

// Bounds of the documents a Source keeps: past either, the cache starts
// again empty.
const (
	maxCachedSpecs     = 1000
	maxCachedSpecBytes = 256 << 20
)

// SourceConfig holds a Source's dependencies.
type SourceConfig struct {
	// Store keeps the definitions. Required.
	Store core.RecordStore
	// Sealer seals the injected values; without it a hook cannot have
	// any.
	Sealer Sealer
	// Reserved reports the names a remote hook cannot take (the built-in
	// hooks'); NewRegistry sets it.
	Reserved func(name string) bool
	// AllowStdio lets MCP servers run a local command (the CLI only).
	AllowStdio bool
	// Resolve replaces the system resolver of the egress guard (tests).
	Resolve egress.Resolver
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Source serves every tenant's remote hooks to the hook registry
// (hooks.Source): it fetches each hook's document once, keeps the tools
// made of it for SpecTTL, revalidates it with its ETag after that, and
// serves the last good one while its service is unreachable.
type Source struct {
	hooks, servers *Hooks
	now            func() time.Time
	// clients are the guarded HTTP clients, one for hooks kept to public
	// addresses and one for hooks allowed private ones, shared so that
	// calls reuse their connections.
	public, private *http.Client

	mu    sync.Mutex
	specs map[specKey]*cachedSpec
	// bytes is the size of the documents the cache holds.
	bytes int
	// sessions are the MCP servers' open sessions and tool lists.
	sessions map[specKey]*mcpSession
}

var _ hooks.Source = (*Source)(nil)

type specKey struct{ tenant, id string }

// cachedSpec is one hook's document as fetched. mu serialises its
// fetches, so that callers arriving together fetch it once.
type cachedSpec struct {
	mu      sync.Mutex
	version time.Time // the hook's UpdatedAt it was fetched for
	spec    *spec
	raw     json.RawMessage
	etag    string
	fetched time.Time
	err     error
}

// NewSource returns a Source.
func NewSource(cfg SourceConfig) *Source {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	reserved := cfg.Reserved
	if reserved == nil {
		reserved = func(string) bool { return false }
	}
	s := &Source{now: now, specs: map[specKey]*cachedSpec{}, sessions: map[specKey]*mcpSession{},
		public:  egress.NewClient(egress.Policy{Resolve: cfg.Resolve}),
		private: egress.NewClient(egress.Policy{AllowPrivate: true, Resolve: cfg.Resolve})}
	s.hooks = &Hooks{store: cfg.Store, sealer: cfg.Sealer, now: now, kind: KindHook, protocol: ProtocolOpenAPI, noun: "remote hook",
		reserved: func(ctx context.Context, tenant, name string) bool {
			return reserved(name) || s.servers.has(ctx, tenant, name)
		}}
	s.servers = &Hooks{store: cfg.Store, sealer: cfg.Sealer, now: now, kind: KindMCPServer, protocol: ProtocolMCP, noun: "MCP server",
		allowStdio: cfg.AllowStdio,
		reserved: func(ctx context.Context, tenant, name string) bool {
			return reserved(name) || s.hooks.has(ctx, tenant, name)
		}}
	return s
}

// NewRegistry returns the hook registry of the built-in hooks and of every
// tenant's remote hooks, and the Source of the latter. A remote hook may
// not take a built-in's name.
func NewRegistry(cfg SourceConfig, builtins ...hooks.Hook) (*hooks.Registry, *Source) {
	var reg *hooks.Registry
	cfg.Reserved = func(name string) bool { return reg.Builtin(name) }
	src := NewSource(cfg)
	reg = hooks.NewRegistry([]hooks.Source{src}, builtins...)
	return reg, src
}

// Definitions is the store of the OpenAPI hooks' definitions.
func (s *Source) Definitions() *Hooks { return s.hooks }

// MCPServers is the store of the MCP servers' definitions.
func (s *Source) MCPServers() *Hooks { return s.servers }

// HookNames implements hooks.Source.
func (s *Source) HookNames(ctx context.Context, tenant string) ([]string, error) {
	names, err := s.hooks.Names(ctx, tenant)
	if err != nil {
		return nil, err
	}
	more, err := s.servers.Names(ctx, tenant)
	if err != nil {
		return nil, err
	}
	names = append(names, more...)
	slices.Sort(names)
	return names, nil
}

// Hook implements hooks.Source.
func (s *Source) Hook(ctx context.Context, tenant, name string) (hooks.Hook, error) {
	h, err := s.hooks.ByName(ctx, tenant, name)
	if core.ErrorCode(err) == core.ENOTFOUND {
		h, err = s.servers.ByName(ctx, tenant, name)
	}
	if err != nil {
		if core.ErrorCode(err) == core.ENOTFOUND {
			return nil, core.Errorf(core.ENOTFOUND, "no remote hook or MCP server named %q", name)
		}
		return nil, err
	}
	if h.Protocol == ProtocolMCP {
		return &mcpHook{src: s, tenant: tenant, hook: h}, nil
	}
	return s.client(tenant, h), nil
}

// Tools returns the tools of a hook, fetching its document or listing its
// server's tools if need be; refresh does so now whatever the cache holds.
func (s *Source) Tools(ctx context.Context, tenant string, h *Hook, refresh bool) ([]core.Tool, error) {
	if h.Protocol == ProtocolMCP {
		ms, err := s.mcpTools(ctx, tenant, h, refresh)
		if err != nil {
			return nil, err
		}
		return ms.tools, nil
	}
	sp, err := s.spec(ctx, tenant, h, refresh)
	if err != nil {
		return nil, err
	}
	return sp.tools, nil
}

// Document returns a hook's OpenAPI document as fetched.
func (s *Source) Document(ctx context.Context, tenant string, h *Hook) (json.RawMessage, error) {
	if _, err := s.spec(ctx, tenant, h, false); err != nil {
		return nil, err
	}
	s.mu.Lock()
	c := s.specs[specKey{tenant, h.ID}]
	s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.raw, nil
}

func (s *Source) client(tenant string, h *Hook) *hookClient {
	client := s.public
	if h.AllowPrivate {
		client = s.private
	}
	return &hookClient{src: s, tenant: tenant, hook: h, client: client}
}

// spec returns the hook's document, from the cache while it is fresh.
func (s *Source) spec(ctx context.Context, tenant string, h *Hook, refresh bool) (*spec, error) {
	k := specKey{tenant, h.ID}
	s.mu.Lock()
	c := s.specs[k]
	if c == nil || !c.version.Equal(h.UpdatedAt) {
		if len(s.specs) >= maxCachedSpecs || s.bytes > maxCachedSpecBytes {
			clear(s.specs)
			s.bytes = 0
		}
		c = &cachedSpec{version: h.UpdatedAt}
		s.specs[k] = c
	}
	s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	now := s.now()
	if c.spec != nil && !refresh && now.Sub(c.fetched) < SpecTTL {
		return c.spec, nil
	}
	err := s.fetch(ctx, tenant, h, c)
	c.fetched = now
	switch {
	case err == nil:
		c.err = nil
		return c.spec, nil
	case c.spec != nil && !refresh:
		// The last good document serves while the service is down.
		c.err = err
		return c.spec, nil
	}
	return nil, err
}

// fetch asks for the hook's document (with the cached ETag) and parses a
// new one.
func (s *Source) fetch(ctx context.Context, tenant string, h *Hook, c *cachedSpec) error {
	specURL := h.SpecURL
	if specURL == "" {
		specURL = strings.TrimRight(h.EndpointURL, "/") + "/openapi.json"
	}
	ctx, cancel := context.WithTimeout(ctx, h.Timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, specURL, nil)
	if err != nil {
		return core.WrapError(core.EINVALID, err, "specUrl")
	}
	req.Header.Set("Accept", "application/json, application/yaml;q=0.9")
	req.Header.Set("User-Agent", "stepwise-remote-hook")
	if sameOrigin(specURL, h.EndpointURL) {
		// The hook's credentials go to its own origin only.
		for k, v := range h.Headers {
			req.Header.Set(k, v)
		}
	}
	if c.etag != "" && c.spec != nil {
		req.Header.Set("If-None-Match", c.etag)
	}
	cl := s.client(tenant, h)
	resp, err := cl.client.Do(req)
	if err != nil {
		return core.WrapError(core.EUNAVAILABLE, scrubErr(err, req), "remote hook %s: fetch its OpenAPI document", h.Name)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusNotModified && c.spec != nil {
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		return core.Errorf(core.EUNAVAILABLE, "remote hook %s: its OpenAPI document %s answered %s", h.Name, redactQuery(specURL), resp.Status)
	}
	data, cut, err := reply.ReadCapped(resp.Body, MaxSpecBytes)
	if err != nil {
		return core.WrapError(core.EUNAVAILABLE, err, "remote hook %s: read its OpenAPI document", h.Name)
	}
	if cut {
		return core.Errorf(core.EINVALID, "remote hook %s: its OpenAPI document is larger than %d MiB", h.Name, MaxSpecBytes>>20)
	}
	sp, err := parseSpec(data, h.hidden())
	if err != nil {
		return core.WrapError(core.EINVALID, err, "remote hook %s", h.Name)
	}
	// The document is kept as it came (YAML as JSON), for
	// /hooks/schemas; the parsed tree is let go, the tools are enough.
	raw := json.RawMessage(data)
	if !json.Valid(data) {
		if raw, err = json.Marshal(sp.doc); err != nil {
			return core.WrapError(core.EINTERNAL, err, "remote hook %s: encode its document", h.Name)
		}
	}
	sp.doc = nil
	s.account(len(raw) - len(c.raw))
	c.spec, c.raw, c.etag = sp, raw, resp.Header.Get("ETag")
	return nil
}

// account adds n bytes to the size of the cached documents.
func (s *Source) account(n int) {
	s.mu.Lock()
	s.bytes += n
	s.mu.Unlock()
}

// hidden are the parameters the hook injects, as in/name.
func (h *Hook) hidden() map[string]bool {
	out := map[string]bool{}
	for _, p := range h.Properties {
		out[p.In+"/"+p.Name] = true
	}
	for k := range h.Headers {
		out[InHeader+"/"+k] = true
	}
	return out
}

// hookClient is one hook, ready to call: the hooks.Hook the registry
// gets.
type hookClient struct {
	src    *Source
	tenant string
	hook   *Hook
	client *http.Client
	spec   *spec
}

// Name implements hooks.Hook.
func (c *hookClient) Name() string { return c.hook.Name }

// Tools implements hooks.Hook.
func (c *hookClient) Tools(ctx context.Context) ([]core.Tool, error) {
	return c.src.Tools(ctx, c.tenant, c.hook, false)
}

// Call implements hooks.Hook: a model's tool call passes its arguments;
// a hook task passes {"input": the task's input} and its static args.
func (c *hookClient) Call(ctx context.Context, call core.HookCall) (core.Value, error) {
	sp, err := c.src.spec(ctx, c.tenant, c.hook, false)
	if err != nil {
		return core.Value{}, err
	}
	c.spec = sp
	tool := call.Tool
	if tool == "" {
		if len(sp.tools) != 1 {
			return core.Value{}, core.Errorf(core.EINVALID, "remote hook %s has %d tools: name one (hook.tool_name)", c.hook.Name, len(sp.tools))
		}
		tool = sp.tools[0].Function.Name
	}
	op := sp.ops[tool]
	if op == nil {
		return core.Value{}, core.Errorf(core.ENOTFOUND, "remote hook %s has no tool %q", c.hook.Name, tool)
	}
	args := callArgs(call)
	ctx, cancel := context.WithTimeout(ctx, c.hook.Timeout())
	defer cancel()
	req, err := c.request(ctx, op, args, call.IdempotencyKey)
	if err != nil {
		return core.Value{}, core.WrapError(core.ErrorCode(err), err, "remote hook %s, tool %s", c.hook.Name, tool)
	}
	return c.do(req, op.method+" "+op.path)
}

// callArgs are a call's arguments: a model's tool call passes its own;
// a hook task passes {"input": the task's input}; the task's static args
// fill in what neither sets.
func callArgs(call core.HookCall) map[string]any {
	args := map[string]any{}
	if m, ok := call.Input.Data.(map[string]any); ok && call.Input.Type == core.TypeJSON {
		args = m
	} else if call.Input.Type != "" && call.Input.Type != core.TypeNil {
		args["input"] = call.Input.Data
	}
	for k, v := range call.Args {
		if _, set := args[k]; !set {
			args[k] = v
		}
	}
	return args
}

func sameOrigin(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Scheme == ub.Scheme && ua.Host == ub.Host
}
