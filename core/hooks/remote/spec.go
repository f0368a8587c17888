package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/stepwise-run/stepwise/core"
)

// Limits of a document and of what is made of it.
const (
	// MaxSpecBytes is the largest document read (GitHub's REST API
	// description is about 12 MB).
	MaxSpecBytes = 32 << 20
	// maxSchemaDepth bounds how deep a parameter schema is written out:
	// a $ref cycle, or a very deep one, stops there as an open object.
	maxSchemaDepth = 6
	// maxToolName is the longest tool name OpenAI accepts.
	maxToolName = 64
)

// operation is one callable operation of a document.
type operation struct {
	method string
	path   string
	// params are the path, query and header parameters, by name.
	params []param
	// body says the operation takes a JSON body; bodyObject that its
	// schema is an object whose properties are the tool's own arguments
	// (otherwise the body is the argument "body").
	body, bodyObject bool
	bodyProps        map[string]bool
}

type param struct {
	name, in string
	required bool
}

// spec is a document turned into tools.
type spec struct {
	doc   *openapi3.T
	tools []core.Tool
	ops   map[string]*operation // by tool name
	// basePath is the path of the document's first relative server URL,
	// put between the endpoint and each operation's path.
	basePath string
}

// skippedPaths are operational endpoints, not tools.
var skippedPaths = map[string]bool{"/health": true, "/healthz": true, "/ready": true, "/readyz": true, "/metrics": true}

// methods that become tools, in the order tools are listed.
var methods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// parseSpec loads an OpenAPI 3 document (JSON or YAML) and makes a tool of
// every operation it can call. External $refs are refused: a document
// cannot make stepwise read files or other URLs. Values injected by the
// hook (hidden) are left out of the tools' parameters.
func parseSpec(data []byte, hidden map[string]bool) (*spec, error) {
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = false
	loader.Context = context.Background()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, core.WrapError(core.EINVALID, err, "not an OpenAPI 3 document")
	}
	if doc.Paths == nil {
		return nil, core.Errorf(core.EINVALID, "the OpenAPI document has no paths")
	}
	s := &spec{doc: doc, ops: map[string]*operation{}}
	for _, srv := range doc.Servers {
		if srv != nil && strings.HasPrefix(srv.URL, "/") {
			s.basePath = strings.TrimRight(srv.URL, "/")
			break
		}
	}
	paths := doc.Paths.InMatchingOrder()
	slices.Sort(paths)
	taken := map[string]bool{}
	for _, path := range paths {
		item := doc.Paths.Value(path)
		if item == nil || skippedPaths[path] {
			continue
		}
		for _, method := range methods {
			op := item.GetOperation(method)
			if op == nil {
				continue
			}
			tool, o := makeTool(path, method, item, op, hidden)
			tool.Function.Name = uniqueName(toolName(path, method, op), taken)
			taken[tool.Function.Name] = true
			s.tools = append(s.tools, tool)
			s.ops[tool.Function.Name] = o
		}
	}
	return s, nil
}

var (
	unsafeName         = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)
	repeatedUnderscore = regexp.MustCompile(`__+`)
)

// toolName is an operation's name before it is made unique: its
// operationId, else its x-tool-name, else method_path, kept to
// ^[a-zA-Z0-9_-]{1,64}$.
func toolName(path, method string, op *openapi3.Operation) string {
	name := op.OperationID
	if name == "" {
		if x, ok := op.Extensions["x-tool-name"].(string); ok {
			name = x
		}
	}
	if name == "" {
		name = strings.ToLower(method) + "_" + path
	}
	return safeName(name, strings.ToLower(method))
}

// safeName is name kept to ^[a-zA-Z0-9_-]{1,64}$, or fallback if nothing
// of it is left.
func safeName(name, fallback string) string {
	name = strings.Trim(repeatedUnderscore.ReplaceAllString(unsafeName.ReplaceAllString(name, "_"), "_"), "_")
	if name == "" {
		name = fallback
	}
	return shorten(name, maxToolName)
}

// shorten cuts name to n characters, ending it with a hash of the whole
// so that two long names that share a beginning stay apart.
func shorten(name string, n int) string {
	if len(name) <= n {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:n-9] + "_" + hex.EncodeToString(sum[:4])
}

// uniqueName is name, or name_2, name_3, ... when it is taken.
func uniqueName(name string, taken map[string]bool) string {
	if !taken[name] {
		return name
	}
	for i := 2; ; i++ {
		suffix := fmt.Sprintf("_%d", i)
		candidate := name
		if len(candidate)+len(suffix) > maxToolName {
			candidate = candidate[:maxToolName-len(suffix)]
		}
		candidate += suffix
		if !taken[candidate] {
			return candidate
		}
	}
}

// makeTool describes one operation as a tool: its parameters (path, query
// and header) and its JSON body's properties become the tool's arguments.
func makeTool(path, method string, item *openapi3.PathItem, op *openapi3.Operation, hidden map[string]bool) (core.Tool, *operation) {
	o := &operation{method: method, path: path, bodyProps: map[string]bool{}}
	props := map[string]any{}
	var required []string
	seen := map[string]bool{}
	for _, list := range []openapi3.Parameters{op.Parameters, item.Parameters} { // the operation's win
		for _, ref := range list {
			if ref == nil || ref.Value == nil {
				continue
			}
			p := ref.Value
			if p.In == openapi3.ParameterInCookie || seen[p.In+"/"+p.Name] {
				continue
			}
			seen[p.In+"/"+p.Name] = true
			if hidden[p.In+"/"+p.Name] {
				continue
			}
			o.params = append(o.params, param{name: p.Name, in: p.In, required: p.Required || p.In == openapi3.ParameterInPath})
			schema := map[string]any{"type": "string"}
			if p.Schema != nil {
				schema = jsonSchema(p.Schema, 0, map[*openapi3.Schema]bool{})
			}
			if p.Description != "" {
				schema["description"] = p.Description
			}
			props[p.Name] = schema
			if p.Required || p.In == openapi3.ParameterInPath {
				required = append(required, p.Name)
			}
		}
	}
	if op.RequestBody != nil && op.RequestBody.Value != nil {
		if mt := op.RequestBody.Value.Content.Get("application/json"); mt != nil {
			o.body = true
			var bs *openapi3.Schema
			if mt.Schema != nil {
				bs = mt.Schema.Value
			}
			if bs != nil && bs.Type.Is("object") && len(bs.Properties) > 0 {
				o.bodyObject = true
				for name, pr := range bs.Properties {
					if hidden[InBody+"/"+name] || props[name] != nil {
						continue
					}
					o.bodyProps[name] = true
					props[name] = jsonSchema(pr, 1, map[*openapi3.Schema]bool{bs: true})
				}
				for _, r := range bs.Required {
					if o.bodyProps[r] {
						required = append(required, r)
					}
				}
			} else {
				schema := map[string]any{"description": "The request body (JSON)."}
				if mt.Schema != nil {
					schema = jsonSchema(mt.Schema, 0, map[*openapi3.Schema]bool{})
				}
				props["body"] = schema
				if op.RequestBody.Value.Required {
					required = append(required, "body")
				}
			}
		}
	}
	params := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		slices.Sort(required)
		params["required"] = slices.Compact(required)
	}
	desc := strings.TrimSpace(op.Summary)
	if d := strings.TrimSpace(op.Description); d != "" && d != desc {
		if desc != "" {
			desc += "\n"
		}
		desc += d
	}
	if desc == "" {
		desc = method + " " + path
	}
	if len(desc) > 1024 {
		desc = desc[:1024]
	}
	return core.Tool{Type: "function", Function: core.ToolFunction{Description: desc, Parameters: params}}, o
}

// jsonSchema writes an OpenAPI schema out as the JSON Schema a model is
// given, with $refs resolved: a cycle, or depth past maxSchemaDepth, ends
// as an open object.
func jsonSchema(ref *openapi3.SchemaRef, depth int, onPath map[*openapi3.Schema]bool) map[string]any {
	if ref == nil || ref.Value == nil {
		return map[string]any{}
	}
	s := ref.Value
	if onPath[s] || depth > maxSchemaDepth {
		return map[string]any{"type": "object", "description": "(nested value; any JSON)"}
	}
	onPath[s] = true
	defer delete(onPath, s)
	out := map[string]any{}
	if s.Type != nil && len(*s.Type) == 1 {
		out["type"] = (*s.Type)[0]
	} else if s.Type != nil && len(*s.Type) > 1 {
		out["type"] = s.Type.Slice()
	}
	if s.Description != "" {
		d := s.Description
		if len(d) > 300 {
			d = d[:300]
		}
		out["description"] = d
	}
	if s.Format != "" {
		out["format"] = s.Format
	}
	if len(s.Enum) > 0 && len(s.Enum) <= 100 {
		out["enum"] = s.Enum
	}
	if s.Items != nil {
		out["items"] = jsonSchema(s.Items, depth+1, onPath)
	}
	if len(s.Properties) > 0 {
		props := map[string]any{}
		for name, p := range s.Properties {
			props[name] = jsonSchema(p, depth+1, onPath)
		}
		out["properties"] = props
		if len(s.Required) > 0 {
			out["required"] = s.Required
		}
	}
	for key, list := range map[string]openapi3.SchemaRefs{"allOf": s.AllOf, "anyOf": s.AnyOf, "oneOf": s.OneOf} {
		if len(list) == 0 {
			continue
		}
		var all []any
		for _, r := range list {
			all = append(all, jsonSchema(r, depth+1, onPath))
		}
		out[key] = all
	}
	return out
}
