package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core/hooks/remote"
)

// transportStreamable is the one MCP transport a server reaches: stdio
// servers are commands on the user's own machine, for the CLI.
const transportStreamable = "streamable-http"

func mcpServers(a *API) hookKind {
	return hookKind{a: a, path: "/mcp-servers", defs: (*remote.Source).MCPServers, decode: a.decodeMCPServer, viewType: "mcp",
		show: func(h *remote.Hook) any { return showMCPServer(h) }}
}

// mcpServer is an MCP server as the API takes and shows it; id and the
// times are accepted on input, so that what GET answered can be sent
// back, and ignored.
type mcpServer struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	URL          string            `json:"url"`
	Transport    string            `json:"transport"`
	Headers      map[string]string `json:"headers"`
	TimeoutMs    int64             `json:"timeoutMs"`
	AllowPrivate bool              `json:"allowPrivate"`
	CreatedAt    *time.Time        `json:"createdAt,omitempty"`
	UpdatedAt    *time.Time        `json:"updatedAt,omitempty"`
}

func showMCPServer(h *remote.Hook) mcpServer {
	shown := h.Shown()
	return mcpServer{ID: h.ID, Name: h.Name, URL: h.EndpointURL, Transport: transportStreamable, Headers: shown.Headers,
		TimeoutMs: h.TimeoutMs, AllowPrivate: h.AllowPrivate, CreatedAt: &h.CreatedAt, UpdatedAt: &h.UpdatedAt}
}

func (a *API) decodeMCPServer(r *http.Request) (remote.Hook, error) {
	var b mcpServer
	aliases := map[string]string{"endpointUrl": "url", "endpoint_url": "url", "timeout_ms": "timeoutMs", "allow_private": "allowPrivate"}
	if err := decodeInto(r, &b, aliases); err != nil {
		return remote.Hook{}, err
	}
	switch strings.ToLower(b.Transport) {
	case "", "http", transportStreamable, "streamable_http", "streamablehttp":
	case "stdio":
		return remote.Hook{}, invalid("transport", "transport: stdio MCP servers run only from the CLI (stepwise run); a server reaches MCP servers over streamable HTTP")
	default:
		return remote.Hook{}, invalid("transport", "transport: %q is not supported; use streamable-http", b.Transport)
	}
	h := remote.Hook{Name: b.Name, EndpointURL: b.URL, Headers: b.Headers, TimeoutMs: b.TimeoutMs, AllowPrivate: b.AllowPrivate}
	return h, a.mayAllowPrivate(r, h)
}
