// Package remote keeps a tenant's remote hooks: HTTP services described
// by an OpenAPI 3 document, each of whose operations becomes a tool that
// chains and models can call. A hook's definition (its endpoint, timeout,
// and the headers and properties injected into every call) is a record of
// the tenant's; the injected values are sealed before they reach the
// store and never leave it again except on the wire to the hook's own
// origin. Documents are fetched through the egress guard, cached with
// their ETag, and turned into tools once per fetch, never per call.
package remote

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks/internal/reply"
)

// Record kinds of the two sorts of remote hook.
const (
	// KindHook is the record kind of a hook described by an OpenAPI
	// document.
	KindHook = "remote_hook"
	// KindMCPServer is the record kind of an MCP server.
	KindMCPServer = "mcp_server"
)

// Protocols a remote hook is spoken to in.
const (
	ProtocolOpenAPI = "openapi"
	ProtocolMCP     = "mcp"
)

// Limits of a hook's definition.
const (
	// MaxTimeout is the longest timeoutMs accepted.
	MaxTimeout = 10 * time.Minute
	// DefaultTimeout is the timeout of a hook that sets none.
	DefaultTimeout = 30 * time.Second
	// maxInjected bounds the headers and properties of one hook.
	maxInjected = 32
)

// SealedValue stands for an injected value in answers: the value itself is
// write-only. A PUT that sends it back keeps the stored value.
const SealedValue = "[sealed]"

// Property is a value injected into every call of the hook, hidden from
// the tools' schemas: a path, query or header parameter, or a property of
// the JSON body (the default).
type Property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	In    string `json:"in,omitempty"`
}

// Where a Property goes.
const (
	InPath   = "path"
	InQuery  = "query"
	InHeader = "header"
	InBody   = "body"
)

// Hook is a remote hook's definition, as the API takes and shows it.
type Hook struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// EndpointURL is the service's base URL: operations' paths are
	// appended to it, and its origin is the only one calls go to.
	EndpointURL string `json:"endpointUrl"`
	// SpecURL is where the OpenAPI document is; "" means
	// EndpointURL/openapi.json.
	SpecURL   string `json:"specUrl,omitempty"`
	TimeoutMs int64  `json:"timeoutMs"`
	// Headers are sent with every call (and the document's fetch).
	Headers map[string]string `json:"headers,omitempty"`
	// Properties are injected into every call.
	Properties []Property `json:"properties,omitempty"`
	// AllowPrivate lets the hook reach loopback and private addresses;
	// only an operator may set it. Link-local addresses stay refused.
	AllowPrivate bool `json:"allowPrivate,omitempty"`
	// Command is the program and arguments of an MCP server spoken to
	// over its standard input and output (stdio): only the CLI, whose
	// user owns the machine, may define one.
	Command   []string  `json:"command,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// Protocol is ProtocolOpenAPI or ProtocolMCP; the store it is kept in
	// decides it.
	Protocol string `json:"-"`
}

// Timeout is the hook's timeout.
func (h *Hook) Timeout() time.Duration {
	if h.TimeoutMs <= 0 {
		return DefaultTimeout
	}
	return time.Duration(h.TimeoutMs) * time.Millisecond
}

// Shown is h as answers show it: every injected value replaced by
// SealedValue.
func (h *Hook) Shown() *Hook {
	out := *h
	out.Headers = make(map[string]string, len(h.Headers))
	for k := range h.Headers {
		out.Headers[k] = SealedValue
	}
	out.Properties = make([]Property, len(h.Properties))
	for i, p := range h.Properties {
		out.Properties[i] = Property{Name: p.Name, In: p.In, Value: SealedValue}
	}
	return &out
}

// secrets are the injected values, to scrub from what a hook answers.
func (h *Hook) secrets() []string {
	var out []string
	for _, v := range h.Headers {
		out = append(out, v)
	}
	for _, p := range h.Properties {
		out = append(out, p.Value)
	}
	return out
}

// nameRule is what a hook's name may be: it is part of every tool name a
// model sees (hook_tool, at most 64 characters).
var nameRule = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,40}$`)

// check validates h, naming the field at fault.
func (h *Hook) check() error {
	if !nameRule.MatchString(h.Name) {
		return core.Errorf(core.EINVALID, "name: %q must be 1 to 40 letters, digits, _ or -", h.Name)
	}
	if h.Protocol == ProtocolMCP {
		return h.checkMCP()
	}
	if len(h.Command) > 0 {
		return core.Errorf(core.EINVALID, "command: only an MCP server runs a command")
	}
	if err := checkURL("endpointUrl", h.EndpointURL, true); err != nil {
		return err
	}
	if h.SpecURL != "" {
		if err := checkURL("specUrl", h.SpecURL, false); err != nil {
			return err
		}
	}
	if err := h.checkCommon(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, p := range h.Properties {
		switch p.In {
		case "":
			h.Properties[i].In = InBody
		case InPath, InQuery, InHeader, InBody:
		default:
			return core.Errorf(core.EINVALID, "properties[%d].in: %q is not one of path, query, header, body", i, p.In)
		}
		in := h.Properties[i].In
		switch {
		case p.Name == "":
			return core.Errorf(core.EINVALID, "properties[%d].name: required", i)
		case in == InHeader && !reply.ValidHeaderName(p.Name):
			return core.Errorf(core.EINVALID, "properties[%d].name: %q is not a header name", i, p.Name)
		case strings.ContainsAny(p.Value, "\r\n\x00") && in != InBody:
			return core.Errorf(core.EINVALID, "properties[%d].value: line breaks are allowed only in the body", i)
		case seen[in+"/"+p.Name]:
			return core.Errorf(core.EINVALID, "properties[%d]: %s %q is injected twice", i, in, p.Name)
		}
		seen[in+"/"+p.Name] = true
	}
	return nil
}

// checkMCP validates an MCP server's definition: a URL speaking
// streamable HTTP, or a command (stdio).
func (h *Hook) checkMCP() error {
	switch {
	case h.SpecURL != "":
		return core.Errorf(core.EINVALID, "specUrl: an MCP server lists its own tools")
	case len(h.Properties) > 0:
		return core.Errorf(core.EINVALID, "properties: an MCP server takes injected headers only")
	case len(h.Command) > 0 && h.EndpointURL != "":
		return core.Errorf(core.EINVALID, "command: give a url or a command, not both")
	case len(h.Command) > 0 && strings.TrimSpace(h.Command[0]) == "":
		return core.Errorf(core.EINVALID, "command: the first item is the program and cannot be empty")
	case len(h.Command) > 0 && len(h.Headers) > 0:
		return core.Errorf(core.EINVALID, "headers: a stdio MCP server takes no headers")
	case len(h.Command) == 0:
		if err := checkURL("url", h.EndpointURL, false); err != nil {
			return err
		}
	}
	return h.checkCommon()
}

// checkCommon validates what every sort of hook has: timeout and headers.
func (h *Hook) checkCommon() error {
	if h.TimeoutMs < 0 || time.Duration(h.TimeoutMs)*time.Millisecond > MaxTimeout {
		return core.Errorf(core.EINVALID, "timeoutMs: %d is not between 1 and %d", h.TimeoutMs, MaxTimeout.Milliseconds())
	}
	if len(h.Headers)+len(h.Properties) > maxInjected {
		return core.Errorf(core.EINVALID, "headers: at most %d headers and properties together", maxInjected)
	}
	for k, v := range h.Headers {
		if !reply.ValidHeaderName(k) || strings.ContainsAny(v, "\r\n\x00") {
			return core.Errorf(core.EINVALID, "headers.%s: not a valid header name and value", k)
		}
	}
	return nil
}

func checkURL(field, raw string, base bool) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || raw == "":
		return core.Errorf(core.EINVALID, "%s: %q is not a URL", field, raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return core.Errorf(core.EINVALID, "%s: scheme must be http or https", field)
	case u.Host == "":
		return core.Errorf(core.EINVALID, "%s: no host", field)
	case u.User != nil:
		return core.Errorf(core.EINVALID, "%s: credentials are not allowed in the URL; inject them as headers", field)
	case base && (u.RawQuery != "" || u.Fragment != ""):
		return core.Errorf(core.EINVALID, "%s: a base URL has no query or fragment; inject query parameters as properties", field)
	}
	return nil
}

// Sealer encrypts injected values before they are stored (core/seal).
type Sealer interface {
	Seal(plaintext, context []byte) ([]byte, error)
	Open(sealed, context []byte) ([]byte, error)
}

// stored is a hook's record body: the definition with every injected
// value sealed.
type stored struct {
	Hook
	SealedHeaders    map[string]string `json:"sealedHeaders,omitempty"`
	SealedProperties []string          `json:"sealedProperties,omitempty"`
}

// Hooks keeps one sort of remote hook (OpenAPI services or MCP servers)
// of every tenant in a RecordStore.
type Hooks struct {
	store  core.RecordStore
	sealer Sealer
	now    func() time.Time
	// kind and protocol are the sort kept; noun names it in messages.
	kind, protocol, noun string
	// reserved names cannot be taken (the built-in hooks' and the other
	// sort's, since chains name hooks of every sort alike).
	reserved func(ctx context.Context, tenant, name string) bool
	// allowStdio lets an MCP server run a command (the CLI).
	allowStdio bool
}

// has reports whether the tenant has a hook of that name in s.
func (s *Hooks) has(ctx context.Context, tenant, name string) bool {
	_, err := s.store.FindRecord(ctx, tenant, s.kind, nameKey(name))
	return err == nil
}

// nameKey is the record key that keeps a tenant's hook names unique.
func nameKey(name string) string { return "name:" + name }

// Create stores a new hook. ECONFLICT if the tenant has one of that name.
func (s *Hooks) Create(ctx context.Context, tenant string, h Hook) (*Hook, error) {
	h.ID = uuid.Must(uuid.NewV7()).String()
	h.CreatedAt = s.now().UTC()
	h.UpdatedAt = h.CreatedAt
	h.Protocol = s.protocol
	if err := s.checkNew(ctx, tenant, &h); err != nil {
		return nil, err
	}
	body, err := s.seal(tenant, &h)
	if err != nil {
		return nil, err
	}
	r := &core.Record{Kind: s.kind, ID: h.ID, Keys: []string{nameKey(h.Name)}, Body: body, CreatedAt: h.CreatedAt, UpdatedAt: h.UpdatedAt}
	if err := s.store.CreateRecord(ctx, tenant, r); err != nil {
		if core.ErrorCode(err) == core.ECONFLICT {
			return nil, core.Errorf(core.ECONFLICT, "name: a %s named %q exists", s.noun, h.Name)
		}
		return nil, err
	}
	return &h, nil
}

func (s *Hooks) checkNew(ctx context.Context, tenant string, h *Hook) error {
	if err := h.check(); err != nil {
		return err
	}
	if len(h.Command) > 0 && !s.allowStdio {
		return core.Errorf(core.EINVALID, "command: an MCP server that runs a command (stdio) is for the CLI only (stepwise run); give the url of one that speaks streamable HTTP")
	}
	if s.reserved(ctx, tenant, h.Name) {
		return core.Errorf(core.ECONFLICT, "name: %q is taken by a built-in hook or another remote hook", h.Name)
	}
	return nil
}

// Get returns a hook by id, its injected values open.
func (s *Hooks) Get(ctx context.Context, tenant, id string) (*Hook, error) {
	r, err := s.store.GetRecord(ctx, tenant, s.kind, id)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return nil, core.Errorf(core.ENOTFOUND, "no %s %q", s.noun, id)
	}
	if err != nil {
		return nil, err
	}
	return s.open(tenant, r)
}

// ByName returns a hook by name.
func (s *Hooks) ByName(ctx context.Context, tenant, name string) (*Hook, error) {
	r, err := s.store.FindRecord(ctx, tenant, s.kind, nameKey(name))
	if core.ErrorCode(err) == core.ENOTFOUND {
		return nil, core.Errorf(core.ENOTFOUND, "no %s named %q", s.noun, name)
	}
	if err != nil {
		return nil, err
	}
	return s.open(tenant, r)
}

// List returns a page of the tenant's hooks.
func (s *Hooks) List(ctx context.Context, tenant string, q core.ListQuery) ([]*Hook, string, error) {
	page, err := s.store.ListRecords(ctx, tenant, s.kind, q)
	if err != nil {
		return nil, "", err
	}
	out := make([]*Hook, 0, len(page.Records))
	for _, r := range page.Records {
		h, err := s.open(tenant, r)
		if err != nil {
			return nil, "", err
		}
		out = append(out, h)
	}
	return out, page.Next, nil
}

// Names returns the names of all the tenant's hooks.
func (s *Hooks) Names(ctx context.Context, tenant string) ([]string, error) {
	var names []string
	for cursor := ""; ; {
		page, err := s.store.ListRecords(ctx, tenant, s.kind, core.ListQuery{Cursor: cursor, Limit: core.MaxPageSize})
		if err != nil {
			return nil, err
		}
		for _, r := range page.Records {
			var st stored
			if err := json.Unmarshal(r.Body, &st); err != nil {
				return nil, core.WrapError(core.EINTERNAL, err, "decode %s %s", s.noun, r.ID)
			}
			names = append(names, st.Name)
		}
		if page.Next == "" {
			slices.Sort(names)
			return names, nil
		}
		cursor = page.Next
	}
}

// Update replaces a hook's definition. An injected value given as
// SealedValue keeps the stored one.
func (s *Hooks) Update(ctx context.Context, tenant, id string, h Hook) (*Hook, error) {
	for attempt := 0; ; attempt++ {
		r, err := s.store.GetRecord(ctx, tenant, s.kind, id)
		if core.ErrorCode(err) == core.ENOTFOUND {
			return nil, core.Errorf(core.ENOTFOUND, "no %s %q", s.noun, id)
		}
		if err != nil {
			return nil, err
		}
		old, err := s.open(tenant, r)
		if err != nil {
			return nil, err
		}
		next := h
		next.ID, next.CreatedAt, next.UpdatedAt, next.Protocol = id, old.CreatedAt, s.now().UTC(), s.protocol
		keepSealed(&next, old)
		if next.Name == old.Name {
			if err := next.check(); err != nil {
				return nil, err
			}
		} else if err := s.checkNew(ctx, tenant, &next); err != nil {
			return nil, err
		}
		if r.Body, err = s.seal(tenant, &next); err != nil {
			return nil, err
		}
		r.Keys, r.UpdatedAt = []string{nameKey(next.Name)}, next.UpdatedAt
		err = s.store.UpdateRecord(ctx, tenant, r)
		if core.ErrorCode(err) == core.ECONFLICT {
			if _, ferr := s.store.FindRecord(ctx, tenant, s.kind, nameKey(next.Name)); ferr == nil && next.Name != old.Name {
				return nil, core.Errorf(core.ECONFLICT, "name: a %s named %q exists", s.noun, next.Name)
			}
			if attempt < 5 {
				continue
			}
		}
		if err != nil {
			return nil, err
		}
		return &next, nil
	}
}

// keepSealed puts old's values in place of every SealedValue of h.
func keepSealed(h, old *Hook) {
	for k, v := range h.Headers {
		if v == SealedValue {
			h.Headers[k] = old.Headers[k]
		}
	}
	for i, p := range h.Properties {
		if p.Value != SealedValue {
			continue
		}
		for _, o := range old.Properties {
			if o.Name == p.Name && (o.In == p.In || p.In == "" && o.In == InBody) {
				h.Properties[i].Value = o.Value
			}
		}
	}
}

// Delete removes a hook.
func (s *Hooks) Delete(ctx context.Context, tenant, id string) error {
	err := s.store.DeleteRecord(ctx, tenant, s.kind, id)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return core.Errorf(core.ENOTFOUND, "no %s %q", s.noun, id)
	}
	return err
}

// sealContext binds a sealed value to its tenant, hook and place.
func sealContext(tenant, id, where string) []byte {
	return []byte("remote-hook\x00" + tenant + "\x00" + id + "\x00" + where)
}

// seal encodes h with its injected values sealed.
func (s *Hooks) seal(tenant string, h *Hook) ([]byte, error) {
	st := stored{Hook: *h.Shown()}
	st.Headers, st.Properties = nil, nil
	if len(h.Headers)+len(h.Properties) > 0 && s.sealer == nil {
		return nil, core.Errorf(core.EUNAVAILABLE, "headers: injected values need the secret key, and none is configured")
	}
	if len(h.Headers) > 0 {
		st.SealedHeaders = map[string]string{}
	}
	for k, v := range h.Headers {
		b, err := s.sealer.Seal([]byte(v), sealContext(tenant, h.ID, "header:"+k))
		if err != nil {
			return nil, core.WrapError(core.EINTERNAL, err, "seal header %s of remote hook %s", k, h.Name)
		}
		st.SealedHeaders[k] = base64.StdEncoding.EncodeToString(b)
	}
	st.Properties = make([]Property, len(h.Properties))
	for i, p := range h.Properties {
		b, err := s.sealer.Seal([]byte(p.Value), sealContext(tenant, h.ID, p.In+":"+p.Name))
		if err != nil {
			return nil, core.WrapError(core.EINTERNAL, err, "seal property %s of remote hook %s", p.Name, h.Name)
		}
		st.Properties[i] = Property{Name: p.Name, In: p.In}
		st.SealedProperties = append(st.SealedProperties, base64.StdEncoding.EncodeToString(b))
	}
	body, err := json.Marshal(st)
	if err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "encode remote hook %s", h.Name)
	}
	return body, nil
}

// open decodes a record, opening its injected values.
func (s *Hooks) open(tenant string, r *core.Record) (*Hook, error) {
	var st stored
	if err := json.Unmarshal(r.Body, &st); err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "decode remote hook %s", r.ID)
	}
	h := st.Hook
	h.ID, h.Protocol = r.ID, s.protocol
	if len(st.SealedHeaders)+len(st.SealedProperties) > 0 && s.sealer == nil {
		return nil, core.Errorf(core.EUNAVAILABLE, "remote hook %s has sealed values and no secret key is configured", h.Name)
	}
	h.Headers = make(map[string]string, len(st.SealedHeaders))
	for k, v := range st.SealedHeaders {
		plain, err := s.openValue(v, sealContext(tenant, h.ID, "header:"+k))
		if err != nil {
			return nil, core.WrapError(core.EINTERNAL, err, "open header %s of remote hook %s", k, h.Name)
		}
		h.Headers[k] = plain
	}
	for i := range h.Properties {
		if i >= len(st.SealedProperties) {
			break
		}
		p := h.Properties[i]
		plain, err := s.openValue(st.SealedProperties[i], sealContext(tenant, h.ID, p.In+":"+p.Name))
		if err != nil {
			return nil, core.WrapError(core.EINTERNAL, err, "open property %s of remote hook %s", p.Name, h.Name)
		}
		h.Properties[i].Value = plain
	}
	return &h, nil
}

func (s *Hooks) openValue(b64 string, context []byte) (string, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", err
	}
	plain, err := s.sealer.Open(b, context)
	return string(plain), err
}
