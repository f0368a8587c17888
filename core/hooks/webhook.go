package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/egress"
	"github.com/stepwise-run/stepwise/core/hooks/internal/reply"
)

// Limits of the webhook hook.
const (
	// webhookTimeout bounds a call whose task sets no args.timeout.
	webhookTimeout = 30 * time.Second
	// webhookMaxTimeout is the longest args.timeout accepted, so that a
	// typo cannot park a worker for hours.
	webhookMaxTimeout = 10 * time.Minute
	// webhookMaxReply is the most of a reply that is read: anything longer
	// is cut, since the reply lands in a checkpoint and often in a prompt.
	webhookMaxReply = 1 << 20
)

// WebhookConfig configures the webhook hook.
type WebhookConfig struct {
	// AllowPrivate lets webhooks reach loopback and private-network
	// addresses (see egress.Policy): for the CLI, whose webhooks often
	// point at services on the same machine. Link-local addresses, where
	// cloud metadata services live, stay refused.
	AllowPrivate bool
	// Resolve replaces the system resolver when set; tests use it to
	// point names at chosen addresses.
	Resolve egress.Resolver
}

// webhook is the built-in webhook hook.
type webhook struct {
	client *http.Client
}

// Webhook returns the webhook hook: it sends the task's input to the URL in
// the task's static args and returns the reply.
//
// Static args: url (required, http or https, no credentials in it), method
// (GET, POST, PUT, PATCH or DELETE; default POST), query (URL-encoded
// parameters added to the URL's own), headers (a JSON object of strings)
// and timeout (a Go duration such as "10s", or whole seconds; default 30s,
// at most 10m).
//
// Body (none for GET): a string input that is valid JSON is sent as is, any
// other string as {"message": input, "data": the other static args}; other
// inputs, including a model's tool arguments, as their JSON. Every request
// carries Idempotency-Key: call.IdempotencyKey, the same for every attempt
// at the same call, so a receiver can drop the duplicate of a re-run step.
//
// Reply: a 2xx reply that is a JSON object or array, or any JSON value
// labelled application/json, becomes a json value; any other 2xx body a
// string. Only the first MiB is read; a longer reply comes back as a
// string cut there, with a marker saying so. A redirect is not followed
// and, like any non-2xx status, is an error naming the status.
//
// The URL comes from the static args only, never from a model: the tool
// advertised to models takes just a message and optional data, so a
// prompt-injected model can choose what to send but not where. Every
// connection goes through the egress guard, which refuses link-local
// (cloud metadata) addresses always and private ones unless
// cfg.AllowPrivate is set.
func Webhook(cfg WebhookConfig) Hook {
	return &webhook{client: egress.NewClient(egress.Policy{AllowPrivate: cfg.AllowPrivate, Resolve: cfg.Resolve})}
}

// Name implements Hook.
func (*webhook) Name() string { return "webhook" }

// Tools implements Hook. The schema offers what Call honours from a model:
// its arguments become the request body.
func (*webhook) Tools(context.Context) ([]core.Tool, error) {
	return []core.Tool{{Type: "function", Function: core.ToolFunction{
		Name:        "webhook",
		Description: "Sends a message to the webhook configured for this task and returns its reply. The destination is fixed by the task; you choose only what to send.",
		Parameters: map[string]any{
			"type": "object",
			"properties": map[string]any{
				"message": map[string]any{"type": "string", "description": "The message to send."},
				"data":    map[string]any{"type": "object", "description": "Optional structured data to send with the message."},
			},
			"required": []any{"message"},
		},
	}}}, nil
}

// webhookRequest is a validated webhook call.
type webhookRequest struct {
	method  string
	url     *url.URL
	headers map[string]string
	timeout time.Duration
	body    []byte // nil for no body
}

// target names the request in errors: method, scheme, host and path, but
// not the query, which may carry tokens that must not reach logs.
func (r *webhookRequest) target() string {
	return r.method + " " + r.url.Scheme + "://" + r.url.Host + r.url.EscapedPath()
}

// Call implements Hook.
func (w *webhook) Call(ctx context.Context, call core.HookCall) (core.Value, error) {
	r, err := parseWebhookCall(call)
	if err != nil {
		return core.Value{}, err
	}
	callCtx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(callCtx, r.method, r.url.String(), body)
	if err != nil {
		return core.Value{}, core.WrapError(core.EINVALID, err, "webhook %s", r.target())
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "stepwise-webhook")
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	if call.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", call.IdempotencyKey)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return core.Value{}, transportError(ctx, callCtx, r, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, truncated, err := reply.ReadCapped(resp.Body, webhookMaxReply)
	if err != nil {
		return core.Value{}, transportError(ctx, callCtx, r, err)
	}
	return webhookReply(r, resp, data, truncated)
}

// parseWebhookCall validates the static args and builds the body.
func parseWebhookCall(call core.HookCall) (*webhookRequest, error) {
	r := &webhookRequest{method: http.MethodPost, timeout: webhookTimeout}
	raw := strings.TrimSpace(call.Args["url"])
	if raw == "" {
		return nil, core.Errorf(core.EINVALID, "args.url: required (the address the webhook posts to)")
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, core.Errorf(core.EINVALID, "args.url: not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, core.Errorf(core.EINVALID, "args.url: scheme must be http or https, not %q", u.Scheme)
	case u.Host == "":
		return nil, core.Errorf(core.EINVALID, "args.url: no host")
	case u.User != nil:
		return nil, core.Errorf(core.EINVALID, "args.url: credentials are not allowed in the URL; send them in args.headers")
	}
	u.Fragment, u.RawFragment = "", ""
	if q := call.Args["query"]; q != "" {
		extra, err := url.ParseQuery(q)
		if err != nil {
			return nil, core.Errorf(core.EINVALID, "args.query: not URL-encoded parameters")
		}
		all := u.Query()
		for k, vs := range extra {
			for _, v := range vs {
				all.Add(k, v)
			}
		}
		u.RawQuery = all.Encode()
	}
	r.url = u
	if m := call.Args["method"]; m != "" {
		r.method = strings.ToUpper(m)
		switch r.method {
		case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		default:
			return nil, core.Errorf(core.EINVALID, "args.method: %q is not one of GET, POST, PUT, PATCH, DELETE", m)
		}
	}
	if h := call.Args["headers"]; h != "" {
		if err := json.Unmarshal([]byte(h), &r.headers); err != nil {
			return nil, core.Errorf(core.EINVALID, "args.headers: must be a JSON object of strings")
		}
		for k, v := range r.headers {
			if !reply.ValidHeaderName(k) || strings.ContainsAny(v, "\r\n\x00") {
				return nil, core.Errorf(core.EINVALID, "args.headers: %q is not a valid header name and value", k)
			}
		}
	}
	if t := call.Args["timeout"]; t != "" {
		if r.timeout, err = parseTimeout(t); err != nil {
			return nil, err
		}
	}
	if r.method != http.MethodGet {
		if r.body, err = webhookBody(call); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// webhookBody renders the call's input as the request body.
func webhookBody(call core.HookCall) ([]byte, error) {
	if s, ok := call.Input.Data.(string); ok {
		if json.Valid([]byte(s)) {
			return []byte(s), nil
		}
		data := make(map[string]string, len(call.Args))
		for k, v := range call.Args {
			data[k] = v
		}
		// The webhook's own settings stay out of the body: headers in
		// particular may hold credentials meant for the transport only.
		for _, k := range []string{"url", "method", "query", "headers", "timeout"} {
			delete(data, k)
		}
		return json.Marshal(map[string]any{"message": s, "data": data})
	}
	b, err := json.Marshal(call.Input.Data)
	if err != nil {
		return nil, core.WrapError(core.EINVALID, err, "webhook: a %s input cannot be sent as JSON", call.Input.Type)
	}
	return b, nil
}

// parseTimeout reads args.timeout: a Go duration or whole seconds.
func parseTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.Atoi(s)
		if nerr != nil {
			return 0, core.Errorf(core.EINVALID, "args.timeout: %q is neither a duration (\"10s\") nor whole seconds", s)
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 || d > webhookMaxTimeout {
		return 0, core.Errorf(core.EINVALID, "args.timeout: %s is not between 0 and %s", d, webhookMaxTimeout)
	}
	return d, nil
}
