package core

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// RunRequest is a request to run a chain in the shape of the reference's
// POST /tasks body (the seed README's qa.json): the chain, its input and
// the input's type, template variables, and a routing policy. The API
// decodes request bodies into it and `stepwise run` request files.
type RunRequest struct {
	Chain *Chain
	// Input is the input as given, before it is coerced to InputType;
	// HasInput tells an absent input from a null one.
	Input    any
	HasInput bool
	// InputType is the input's data type name as given ("" when absent).
	InputType string
	// TemplateVars feed {{var:NAME}}.
	TemplateVars map[string]string
	// RoutingPolicy, when not "", replaces the chain's.
	RoutingPolicy string
}

// runRequestFields maps every accepted spelling of a run request's fields
// to its canonical name: the reference's camelCase, snake_case, and the
// other spelling of routing_policy.
func runRequestFields() map[string]string {
	return map[string]string{
		"chain": "chain", "input": "input",
		"inputType": "inputType", "input_type": "inputType",
		"templateVars": "templateVars", "template_vars": "templateVars",
		"routing_policy": "routing_policy", "routingPolicy": "routing_policy",
	}
}

// IsRunRequest reports whether a parsed document is a run request rather
// than a chain: an object with a chain and no tasks of its own.
func IsRunRequest(tree any) bool {
	m, ok := tree.(map[string]any)
	return ok && m["chain"] != nil && m["tasks"] == nil
}

// CanonicalFields checks the keys of a decoded JSON object: spellings maps
// every accepted spelling of a field (its canonical name included) to the
// canonical name. It returns the object under canonical names. A key that
// is not a known spelling, or a field given under two spellings, is
// EINVALID; bad names that key, and the message starts with it. Keys are
// checked in sorted order, so the same input always names the same key.
func CanonicalFields(m map[string]any, spellings map[string]string) (out map[string]any, bad string, err error) {
	known := make([]string, 0, len(spellings))
	seen := map[string]bool{}
	for _, c := range spellings {
		if !seen[c] {
			seen[c] = true
			known = append(known, c)
		}
	}
	slices.Sort(known)
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	out = make(map[string]any, len(m))
	given := map[string]string{} // canonical name -> the spelling used
	for _, key := range keys {
		c, ok := spellings[key]
		if !ok {
			return nil, key, Errorf(EINVALID, "%s: unknown field%s (known: %s)", key, Suggest(key, known), strings.Join(known, ", "))
		}
		if prev, dup := given[c]; dup {
			return nil, key, Errorf(EINVALID, "%s: %q and %q are the same field; give only one", key, prev, key)
		}
		out[c], given[c] = m[key], key
	}
	return out, "", nil
}

// DecodeRunRequest reads a parsed run request (see ParseDocument): every
// field is checked, and the chain is decoded and validated. Errors are
// EINVALID; their messages start with the request field at fault
// ("inputType: ...", "templateVars.n: ..."), and a chain's problems are a
// *ValidationError whose paths begin with "chain". warnings are the chain
// decoder's.
func DecodeRunRequest(tree any) (req *RunRequest, warnings []Problem, err error) {
	m, ok := tree.(map[string]any)
	if !ok {
		return nil, nil, Errorf(EINVALID, "a run request is an object with chain, input, inputType and templateVars")
	}
	canonical, _, err := CanonicalFields(m, runRequestFields())
	if err != nil {
		return nil, nil, err
	}
	req = &RunRequest{}
	if canonical["chain"] == nil {
		return nil, nil, Errorf(EINVALID, "chain: required: the task chain to run")
	}
	req.Input, req.HasInput = canonical["input"]
	if v := canonical["inputType"]; v != nil {
		s, ok := v.(string)
		if !ok {
			return nil, nil, Errorf(EINVALID, "inputType: want a string, got %s", DescribeJSON(v))
		}
		req.InputType = s
	}
	if v := canonical["routing_policy"]; v != nil {
		s, ok := v.(string)
		if !ok {
			return nil, nil, Errorf(EINVALID, "routing_policy: want a string, got %s", DescribeJSON(v))
		}
		if err := CheckRoutingPolicy("routing_policy", s); err != nil {
			return nil, nil, err
		}
		req.RoutingPolicy = s
	}
	if req.TemplateVars, err = decodeTemplateVars(canonical["templateVars"]); err != nil {
		return nil, nil, err
	}
	chain, warnings, err := DecodeChainValue(canonical["chain"])
	if err != nil {
		return nil, warnings, InRunRequest(err)
	}
	if req.RoutingPolicy != "" {
		chain.RoutingPolicy = req.RoutingPolicy
	}
	req.Chain = chain
	return req, warnings, nil
}

// InRunRequest returns err with the paths of its chain problems (a
// *ValidationError from Validate or Engine.Start) as a run request names
// them, beginning with "chain"; any other error is returned as it is.
func InRunRequest(err error) error {
	var ve *ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	ps := make([]Problem, len(ve.Problems))
	for i, p := range ve.Problems {
		if p.Path == "" {
			p.Path = "chain"
		} else {
			p.Path = "chain." + p.Path
		}
		ps[i] = p
	}
	return invalidChain(ps)
}

// decodeTemplateVars reads an object of strings; numbers and booleans are
// taken as their text.
func decodeTemplateVars(v any) (map[string]string, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, Errorf(EINVALID, "templateVars: want an object of strings, got %s", DescribeJSON(v))
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		switch s := x.(type) {
		case string:
			out[k] = s
		case json.Number:
			out[k] = s.String()
		case bool:
			out[k] = strconv.FormatBool(s)
		case int:
			out[k] = strconv.Itoa(s)
		case float64:
			out[k] = strconv.FormatFloat(s, 'f', -1, 64)
		default:
			return nil, Errorf(EINVALID, "templateVars.%s: want a string, got %s", k, DescribeJSON(x))
		}
	}
	return out, nil
}
