package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks/internal/reply"
)

// Bounds of what an MCP server may hand over.
const (
	// maxMCPTools is the most tools taken from one server's list.
	maxMCPTools = 1000
	// maxMCPDescription cuts a tool's description: it goes into every
	// request that offers the tool.
	maxMCPDescription = 2048
)

// IdempotencyMetaKey is the _meta key of a tools/call request that
// carries the call's idempotency key (it also goes as the Idempotency-Key
// header of the HTTP request).
const IdempotencyMetaKey = "io.stepwise/idempotency-key"

// mcpSession is one MCP server's open session and tool list, for one
// tenant. mu serialises connecting and listing; calls share the session.
type mcpSession struct {
	mu      sync.Mutex
	version time.Time // the hook's UpdatedAt it was opened for
	session *sdk.ClientSession
	tools   []core.Tool
	// names maps the tools' names as models see them to the server's.
	names  map[string]string
	listed time.Time
	// closed is set once the entry left the cache: no session opens on
	// it again, or it would outlive every Close.
	closed bool
}

// mcpEntry returns the cache entry of a server, a new one if the server's
// definition changed since.
func (s *Source) mcpEntry(tenant string, h *Hook) *mcpSession {
	k := specKey{tenant, h.ID}
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := s.sessions[k]
	if ms != nil && ms.version.Equal(h.UpdatedAt) {
		return ms
	}
	if ms != nil {
		go ms.close()
	}
	if len(s.sessions) >= maxCachedSpecs {
		for _, old := range s.sessions {
			go old.close()
		}
		clear(s.sessions)
	}
	ms = &mcpSession{version: h.UpdatedAt}
	s.sessions[k] = ms
	return ms
}

// close ends the session (for a stdio server, its process) for good.
func (ms *mcpSession) close() {
	ms.mu.Lock()
	sess := ms.session
	ms.session, ms.closed = nil, true
	ms.mu.Unlock()
	if sess != nil {
		_ = sess.Close()
	}
}

// Close ends every open MCP session; a stdio server's process ends with
// it.
func (s *Source) Close() error {
	s.mu.Lock()
	all := make([]*mcpSession, 0, len(s.sessions))
	for _, ms := range s.sessions {
		all = append(all, ms)
	}
	clear(s.sessions)
	s.mu.Unlock()
	for _, ms := range all {
		ms.close()
	}
	return nil
}

// mcpTools returns the server's entry with its tools listed: from the
// cache while fresh, and the last good list while the server is down.
func (s *Source) mcpTools(ctx context.Context, tenant string, h *Hook, refresh bool) (*mcpSession, error) {
	ms := s.mcpEntry(tenant, h)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	now := s.now()
	if ms.tools != nil && !refresh && now.Sub(ms.listed) < SpecTTL {
		return ms, nil
	}
	err := s.listLocked(ctx, h, ms)
	ms.listed = now
	if err != nil && (ms.tools == nil || refresh) {
		return nil, err
	}
	return ms, nil
}

// listLocked asks the server for its tools, connecting first if need be.
func (s *Source) listLocked(ctx context.Context, h *Hook, ms *mcpSession) error {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout())
	defer cancel()
	sess, err := s.sessionLocked(ctx, h, ms)
	if err != nil {
		return err
	}
	var tools []core.Tool
	names := map[string]string{}
	taken := map[string]bool{}
	for t, err := range sess.Tools(ctx, nil) {
		if err != nil {
			ms.dropLocked(sess, err)
			return mcpError(ctx, err, h, "list its tools")
		}
		if len(tools) == maxMCPTools {
			break
		}
		tool, err := mcpTool(t)
		if err != nil {
			return core.Errorf(core.EINVALID, "MCP server %s: tool %q: %s", h.Name, t.Name, scrub(h, err.Error()))
		}
		tool.Function.Name = uniqueName(tool.Function.Name, taken)
		taken[tool.Function.Name] = true
		names[tool.Function.Name] = t.Name
		tools = append(tools, tool)
	}
	if tools == nil {
		tools = []core.Tool{}
	}
	ms.tools, ms.names = tools, names
	return nil
}

// mcpTool describes an MCP tool as a function tool, its name kept to what
// models accept.
func mcpTool(t *sdk.Tool) (core.Tool, error) {
	params := map[string]any{}
	if t.InputSchema != nil {
		b, err := json.Marshal(t.InputSchema)
		if err != nil {
			return core.Tool{}, err
		}
		if err := json.Unmarshal(b, &params); err != nil {
			return core.Tool{}, fmt.Errorf("inputSchema is not an object: %w", err)
		}
	}
	if params["type"] == nil {
		params["type"] = "object"
	}
	if params["type"] == "object" && params["properties"] == nil {
		params["properties"] = map[string]any{}
	}
	desc := t.Description
	if desc == "" {
		desc = t.Title
	}
	if len(desc) > maxMCPDescription {
		desc = reply.Cut(desc, maxMCPDescription)
	}
	return core.Tool{Type: "function", Function: core.ToolFunction{Name: safeName(t.Name, "tool"), Description: desc, Parameters: params}}, nil
}

// sessionLocked returns the open session, opening one if there is none.
func (s *Source) sessionLocked(ctx context.Context, h *Hook, ms *mcpSession) (*sdk.ClientSession, error) {
	if ms.session != nil {
		return ms.session, nil
	}
	if ms.closed {
		return nil, core.Errorf(core.EUNAVAILABLE, "MCP server %s: its definition changed while the call began; try again", h.Name)
	}
	client := sdk.NewClient(&sdk.Implementation{Name: "stepwise", Version: "1"}, nil)
	sess, err := client.Connect(ctx, s.transport(h), nil)
	if err != nil {
		return nil, mcpError(ctx, err, h, "connect")
	}
	ms.session = sess
	return sess, nil
}

// dropLocked forgets a session that failed, so that the next use opens a
// new one; a session still working is kept.
func (ms *mcpSession) dropLocked(sess *sdk.ClientSession, err error) {
	if ms.session == sess && (errors.Is(err, sdk.ErrConnectionClosed) || errors.Is(err, sdk.ErrSessionMissing) || isTransportError(err)) {
		ms.session = nil
		go func() { _ = sess.Close() }()
	}
}

// isTransportError reports an error of the connection rather than of the
// server's answer.
func isTransportError(err error) bool {
	var ue interface{ Timeout() bool }
	return errors.As(err, &ue) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// transport is how the server is reached: its command's standard input
// and output, or streamable HTTP through the egress guard with the hook's
// headers.
func (s *Source) transport(h *Hook) sdk.Transport {
	if len(h.Command) > 0 {
		cmd := exec.Command(h.Command[0], h.Command[1:]...)
		cmd.Stderr = io.Discard
		return &sdk.CommandTransport{Command: cmd}
	}
	base := s.public
	if h.AllowPrivate {
		base = s.private
	}
	return &sdk.StreamableClientTransport{
		Endpoint: h.EndpointURL,
		HTTPClient: &http.Client{
			Transport:     &mcpHeaders{base: base.Transport, hook: h},
			CheckRedirect: base.CheckRedirect,
		},
		// A request is retried by the engine, with its idempotency key,
		// not by the transport behind its back.
		MaxRetries:           -1,
		DisableStandaloneSSE: true,
		MaxEventSize:         2 * MaxReply,
	}
}

// idempotencyKey is the context key of a call's idempotency key.
type idempotencyKey struct{}

// mcpHeaders adds the hook's headers to requests to its own origin, and
// the call's idempotency key to the request that carries the call.
type mcpHeaders struct {
	base http.RoundTripper
	hook *Hook
}

func (m *mcpHeaders) RoundTrip(req *http.Request) (*http.Response, error) {
	key, _ := req.Context().Value(idempotencyKey{}).(string)
	if !sameOrigin(req.URL.String(), m.hook.EndpointURL) || len(m.hook.Headers) == 0 && key == "" {
		return m.base.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	for k, v := range m.hook.Headers {
		req.Header.Set(k, v)
	}
	if key != "" && req.Method == http.MethodPost {
		req.Header.Set("Idempotency-Key", key)
	}
	return m.base.RoundTrip(req)
}

// mcpError classifies a failure to talk to the server. The server's or
// the transport's words are scrubbed of the hook's header values, which
// an error may echo.
func mcpError(ctx context.Context, err error, h *Hook, doing string) error {
	var ce *core.Error
	if errors.As(err, &ce) {
		return ce
	}
	code := core.EUNAVAILABLE
	if ctx.Err() != nil {
		code = core.ETIMEOUT
	}
	return core.Errorf(code, "MCP server %s: %s: %s", h.Name, doing, scrub(h, err.Error()))
}

// mcpHook is one MCP server, ready to call: the hooks.Hook the registry
// gets.
type mcpHook struct {
	src    *Source
	tenant string
	hook   *Hook
}

// Name implements hooks.Hook.
func (m *mcpHook) Name() string { return m.hook.Name }

// Tools implements hooks.Hook.
func (m *mcpHook) Tools(ctx context.Context) ([]core.Tool, error) {
	return m.src.Tools(ctx, m.tenant, m.hook, false)
}

// Call implements hooks.Hook: the server's tool runs with the call's
// arguments and idempotency key.
func (m *mcpHook) Call(ctx context.Context, call core.HookCall) (core.Value, error) {
	ms, err := m.src.mcpTools(ctx, m.tenant, m.hook, false)
	if err != nil {
		return core.Value{}, err
	}
	ms.mu.Lock()
	tool, names := call.Tool, ms.names
	if tool == "" && len(ms.tools) == 1 {
		tool = ms.tools[0].Function.Name
	}
	ms.mu.Unlock()
	name, ok := names[tool]
	if !ok {
		if tool == "" {
			return core.Value{}, core.Errorf(core.EINVALID, "MCP server %s has %d tools: name one (hook.tool_name)", m.hook.Name, len(names))
		}
		return core.Value{}, core.Errorf(core.ENOTFOUND, "MCP server %s has no tool %q", m.hook.Name, tool)
	}
	ctx, cancel := context.WithTimeout(ctx, m.hook.Timeout())
	defer cancel()
	ctx = context.WithValue(ctx, idempotencyKey{}, call.IdempotencyKey)
	params := &sdk.CallToolParams{Name: name, Arguments: callArgs(call)}
	if call.IdempotencyKey != "" {
		params.Meta = sdk.Meta{IdempotencyMetaKey: call.IdempotencyKey}
	}
	res, err := m.call(ctx, ms, params)
	if err != nil {
		return core.Value{}, mcpError(ctx, err, m.hook, "call "+name)
	}
	return m.result(name, res)
}

// call runs one tools/call. A server that says it has forgotten the
// session (it restarted) never saw the call, so the call goes again once
// on a new session.
func (m *mcpHook) call(ctx context.Context, ms *mcpSession, params *sdk.CallToolParams) (*sdk.CallToolResult, error) {
	for attempt := 0; ; attempt++ {
		ms.mu.Lock()
		sess, err := m.src.sessionLocked(ctx, m.hook, ms)
		ms.mu.Unlock()
		if err != nil {
			return nil, err
		}
		res, err := sess.CallTool(ctx, params)
		if err == nil {
			return res, nil
		}
		ms.mu.Lock()
		ms.dropLocked(sess, err)
		ms.mu.Unlock()
		if !errors.Is(err, sdk.ErrSessionMissing) || attempt > 0 {
			return nil, err
		}
	}
}

// result turns a tool's answer into a value: its structured content as
// JSON, else its text; an answer marked as an error is an error the
// model sees. The hook's header values are scrubbed from it.
func (m *mcpHook) result(tool string, res *sdk.CallToolResult) (core.Value, error) {
	var text string
	if res.StructuredContent != nil && !res.IsError {
		b, err := json.Marshal(res.StructuredContent)
		if err != nil {
			return core.Value{}, core.WrapError(core.EINVALID, err, "MCP server %s, tool %s: structured content", m.hook.Name, tool)
		}
		text = string(b)
	} else {
		parts := make([]string, 0, len(res.Content))
		for _, c := range res.Content {
			if t, ok := c.(*sdk.TextContent); ok {
				parts = append(parts, t.Text)
				continue
			}
			b, err := json.Marshal(c)
			if err != nil {
				return core.Value{}, core.WrapError(core.EINVALID, err, "MCP server %s, tool %s: content", m.hook.Name, tool)
			}
			parts = append(parts, string(b))
		}
		text = strings.Join(parts, "\n")
	}
	text = scrub(m.hook, text)
	if len(text) > MaxReply {
		text = reply.Cut(text, MaxReply) + fmt.Sprintf("\n[stepwise: answer cut at %d bytes]", MaxReply)
	}
	if res.IsError {
		return core.Value{}, core.Upstream(core.Errorf(core.EINVALID, "MCP server %s, tool %s: %s", m.hook.Name, tool, text))
	}
	if res.StructuredContent != nil {
		var v any
		if err := json.Unmarshal([]byte(text), &v); err == nil {
			return core.Value{Type: core.TypeJSON, Data: v}, nil
		}
	}
	return core.String(text), nil
}
