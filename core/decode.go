package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// DecodeChain reads a chain from JSON or YAML (sniffed: a document starting
// with '{' is JSON), accepting every alias of the reference system and
// returning the chain in canonical form. Unknown fields, wrong types and
// malformed durations are reported together as a *ValidationError (code
// EINVALID); fields the reference removed long ago are accepted and
// reported as warnings. DecodeChain does not validate the chain's
// semantics: call Validate, or use ParseChain for both.
func DecodeChain(data []byte) (*Chain, []Problem, error) {
	tree, err := ParseDocument(data)
	if err != nil {
		return nil, nil, err
	}
	return DecodeChainValue(tree)
}

// ParseDocument parses a JSON or YAML document into generic values (maps,
// slices, strings, bools, json.Number for JSON numbers). A document
// starting with '{' is JSON, or YAML in flow style if it is not valid
// JSON. Errors are EINVALID.
func ParseDocument(data []byte) (any, error) {
	var tree any
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, Errorf(EINVALID, "empty document")
	}
	if trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.UseNumber()
		if jerr := dec.Decode(&tree); jerr != nil {
			// YAML's flow style also starts with '{'.
			if yaml.Unmarshal(trimmed, &tree) != nil {
				return nil, WrapError(EINVALID, jerr, "not valid JSON")
			}
			return NormalizeYAML(tree), nil
		}
		return tree, nil
	}
	if err := yaml.Unmarshal(trimmed, &tree); err != nil {
		return nil, WrapError(EINVALID, err, "not valid YAML")
	}
	return NormalizeYAML(tree), nil
}

// NormalizeYAML turns what a YAML decoder produces into what a JSON
// decoder would: objects as map[string]any even where YAML saw keys of
// other types ("200:" is an integer key in YAML). It changes maps and
// lists in place.
func NormalizeYAML(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = NormalizeYAML(e)
		}
		return x
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = NormalizeYAML(e)
		}
		return out
	case []any:
		for i, e := range x {
			x[i] = NormalizeYAML(e)
		}
		return x
	}
	return v
}

// ParseChain decodes and validates a chain.
func ParseChain(data []byte) (*Chain, []Problem, error) {
	c, warnings, err := DecodeChain(data)
	if err != nil {
		return nil, warnings, err
	}
	return c, warnings, Validate(c)
}

// DecodeChainValue is DecodeChain for a chain already parsed into generic
// values (maps, slices, strings, numbers), as an HTTP handler has it.
func DecodeChainValue(tree any) (*Chain, []Problem, error) {
	d := &decoder{}
	norm := d.object(tree, chainSchema, "", "")
	if err := invalidChain(d.problems); err != nil {
		return nil, d.warnings, err
	}
	if norm == nil {
		return nil, d.warnings, Errorf(EINVALID, "chain must be an object")
	}
	moveTaskCompose(norm)
	b, err := json.Marshal(norm)
	if err != nil {
		return nil, d.warnings, WrapError(EINTERNAL, err, "re-encode chain")
	}
	var c Chain
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, d.warnings, WrapError(EINVALID, err, "decode chain")
	}
	defaultOperators(&c)
	return &c, d.warnings, nil
}

// defaultOperators fills in a branch's missing operator: equals when it has
// a when, default when it has none. (The reference rejected an empty
// operator at run time, after the chain had been accepted.)
func defaultOperators(c *Chain) {
	for _, t := range c.Tasks {
		if t == nil || t.Transition == nil {
			continue
		}
		for _, b := range t.Transition.Branches {
			if b != nil && b.Operator == "" {
				b.Operator = OpDefault
				if b.When != "" {
					b.Operator = OpEquals
				}
			}
		}
	}
}

// decoder walks a generic tree, checking it against the schemas and
// building a normalized copy with canonical keys and values.
type decoder struct {
	problems []Problem
	warnings []Problem
}

func (d *decoder) fail(task, path, format string, args ...any) {
	d.problems = append(d.problems, Problem{TaskID: task, Path: path, Message: fmt.Sprintf(format, args...)})
}

func (d *decoder) warn(task, path, format string, args ...any) {
	d.warnings = append(d.warnings, Problem{TaskID: task, Path: path, Message: fmt.Sprintf(format, args...)})
}

// object normalizes one object; it returns nil (after recording a problem)
// when v is not an object.
func (d *decoder) object(v any, s *schema, path, task string) map[string]any {
	m, ok := asMap(v)
	if !ok {
		d.fail(task, path, "want an object, got %s", DescribeJSON(v))
		return nil
	}
	if s == taskSchema {
		if id, ok := m["id"].(string); ok {
			task = id
		}
	}
	out := make(map[string]any, len(m))
	seen := map[string]string{}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		val := m[key]
		fpath := joinPath(path, key)
		name, known := s.canonical(key)
		if !known {
			if why, ok := s.ignored[key]; ok {
				d.warn(task, fpath, "ignored: %s", why)
				continue
			}
			if why, ok := s.ignored[toSnake(key)]; ok {
				d.warn(task, fpath, "ignored: %s", why)
				continue
			}
			candidates := s.names()
			if hint := Closest(key, candidates); hint != "" {
				d.fail(task, fpath, "unknown field; did you mean %q?", hint)
			} else {
				d.fail(task, fpath, "unknown field (known: %s)", strings.Join(candidates, ", "))
			}
			continue
		}
		if prev, dup := seen[name]; dup {
			d.fail(task, fpath, "%q and %q are the same field; give only one", prev, key)
			continue
		}
		seen[name] = key
		if norm, ok := d.value(val, s.fields[name], joinPath(path, name), task); ok {
			out[name] = norm
		}
	}
	return out
}

// value normalizes one field value according to its kind.
func (d *decoder) value(v any, f field, path, task string) (any, bool) {
	if v == nil {
		return nil, false // an explicit null is the same as absent
	}
	switch f.kind {
	case kString:
		s, ok := v.(string)
		if !ok {
			d.fail(task, path, "want a string, got %s", DescribeJSON(v))
			return nil, false
		}
		if f.values != nil {
			if c, ok := f.values[s]; ok {
				return c, true
			}
		}
		return s, true
	case kText:
		s, ok := scalarText(v)
		if !ok {
			d.fail(task, path, "want a string, got %s", DescribeJSON(v))
			return nil, false
		}
		return s, true
	case kInt:
		n, ok := asInt(v)
		if !ok {
			d.fail(task, path, "want an integer, got %s", DescribeJSON(v))
			return nil, false
		}
		if n < 0 {
			d.fail(task, path, "must not be negative")
			return nil, false
		}
		return n, true
	case kNumber:
		n, ok := asFloat(v)
		if !ok {
			d.fail(task, path, "want a number, got %s", DescribeJSON(v))
			return nil, false
		}
		return n, true
	case kBool:
		b, ok := v.(bool)
		if !ok {
			d.fail(task, path, "want true or false, got %s", DescribeJSON(v))
			return nil, false
		}
		return b, true
	case kDuration:
		s, ok := v.(string)
		if !ok {
			d.fail(task, path, "want a duration string such as \"30s\", got %s", DescribeJSON(v))
			return nil, false
		}
		if _, err := parseDuration(s); err != nil {
			d.fail(task, path, "%v", err)
			return nil, false
		}
		return s, true
	case kStringList:
		if s, ok := v.(string); ok {
			return []string{s}, true
		}
		list, ok := v.([]any)
		if !ok {
			d.fail(task, path, "want a list of strings, got %s", DescribeJSON(v))
			return nil, false
		}
		out := make([]string, 0, len(list))
		for i, x := range list {
			s, ok := x.(string)
			if !ok {
				d.fail(task, fmt.Sprintf("%s[%d]", path, i), "want a string, got %s", DescribeJSON(x))
				continue
			}
			out = append(out, s)
		}
		return out, true
	case kStringMap:
		m, ok := asMap(v)
		if !ok {
			d.fail(task, path, "want an object of strings, got %s", DescribeJSON(v))
			return nil, false
		}
		out := make(map[string]string, len(m))
		for k, x := range m {
			s, ok := scalarText(x)
			if !ok {
				d.fail(task, joinPath(path, k), "want a string, got %s", DescribeJSON(x))
				continue
			}
			out[k] = s
		}
		return out, true
	case kBoolMap:
		m, ok := asMap(v)
		if !ok {
			d.fail(task, path, "want an object of true/false values, got %s", DescribeJSON(v))
			return nil, false
		}
		out := make(map[string]bool, len(m))
		for k, x := range m {
			b, ok := x.(bool)
			if !ok {
				d.fail(task, joinPath(path, k), "want true or false, got %s", DescribeJSON(x))
				continue
			}
			out[k] = b
		}
		return out, true
	case kObject:
		o := d.object(v, f.schema, path, task)
		return o, o != nil
	case kObjectList:
		list, ok := v.([]any)
		if !ok {
			d.fail(task, path, "want a list of objects, got %s", DescribeJSON(v))
			return nil, false
		}
		out := make([]any, 0, len(list))
		for i, x := range list {
			itemTask := task
			if f.schema == taskSchema {
				itemTask = ""
			}
			if o := d.object(x, f.schema, fmt.Sprintf("%s[%d]", path, i), itemTask); o != nil {
				out = append(out, o)
			}
		}
		return out, true
	}
	return nil, false
}

// moveTaskCompose puts a task-level compose (older generation) onto every
// branch of the task that has no compose of its own; a task without
// branches gets the default branch to the end that it implied, carrying
// the compose.
func moveTaskCompose(chain map[string]any) {
	tasks, _ := chain["tasks"].([]any)
	for _, t := range tasks {
		task, _ := t.(map[string]any)
		compose, ok := task["compose"]
		if !ok {
			continue
		}
		delete(task, "compose")
		tr, _ := task["transition"].(map[string]any)
		if tr == nil {
			tr = map[string]any{}
			task["transition"] = tr
		}
		branches, _ := tr["branches"].([]any)
		if len(branches) == 0 {
			tr["branches"] = []any{map[string]any{"operator": OpDefault, "goto": End, "compose": compose}}
			continue
		}
		for _, b := range branches {
			branch, _ := b.(map[string]any)
			if _, has := branch["compose"]; !has {
				branch["compose"] = compose
			}
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// asMap accepts the map shapes JSON and YAML decoders produce.
func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, x := range m {
			out[fmt.Sprint(k)] = x
		}
		return out, true
	}
	return nil, false
}

func asInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case uint64:
		return int(n), n <= math.MaxInt
	case float64:
		return int(n), n == math.Trunc(n) && math.Abs(n) < 1<<53
	case json.Number:
		i, err := strconv.Atoi(n.String())
		return i, err == nil
	}
	return 0, false
}

func asFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

// scalarText renders a scalar as the string a hook argument holds, so
// that YAML's `count: 3` is accepted for a string argument.
func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case json.Number:
		return x.String(), true
	}
	if f, ok := asFloat(v); ok {
		return formatFloat(f), true
	}
	return "", false
}

// DescribeJSON names the JSON type of a decoded value ("a string", "an
// object", "null", ...) for error messages.
func DescribeJSON(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	}
	if _, ok := asMap(v); ok {
		return "an object"
	}
	if _, ok := asFloat(v); ok {
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}
