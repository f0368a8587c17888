package events

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// HeadersPrefix starts a field path that reads a header of the raw event
// rather than its payload: "$headers.X-GitHub-Event".
const HeadersPrefix = "$headers."

// Path is a compiled field path: a JSONPath of names and indices, with or
// without the leading "$." ("data.user_id", "$.items[0].id",
// "$['odd key'].x"), or HeadersPrefix and a header name.
type Path struct {
	header string
	steps  []pathStep
}

type pathStep struct {
	name    string
	index   int
	isIndex bool
}

// ParsePath compiles a field path, saying what is wrong with a malformed
// one.
func ParsePath(s string) (Path, error) {
	if h, ok := strings.CutPrefix(s, HeadersPrefix); ok {
		if h == "" || strings.ContainsAny(h, " \t\r\n:") {
			return Path{}, fmt.Errorf("%q: not a header name", s)
		}
		return Path{header: http.CanonicalHeaderKey(h)}, nil
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(s, "$"), ".")
	if rest == "" {
		if s == "$" {
			return Path{}, nil
		}
		return Path{}, fmt.Errorf("empty path")
	}
	var p Path
	for rest != "" {
		switch {
		case rest[0] == '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return Path{}, fmt.Errorf("%q: [ without ]", s)
			}
			inner := rest[1:end]
			if len(inner) >= 2 && (inner[0] == '\'' || inner[0] == '"') && inner[len(inner)-1] == inner[0] {
				p.steps = append(p.steps, pathStep{name: inner[1 : len(inner)-1]})
			} else {
				n, err := strconv.Atoi(inner)
				if err != nil || n < 0 {
					return Path{}, fmt.Errorf("%q: [%s] is neither an index nor a quoted name", s, inner)
				}
				p.steps = append(p.steps, pathStep{index: n, isIndex: true})
			}
			rest = strings.TrimPrefix(rest[end+1:], ".")
		default:
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			if end == 0 {
				return Path{}, fmt.Errorf("%q: an empty name", s)
			}
			p.steps = append(p.steps, pathStep{name: rest[:end]})
			rest = strings.TrimPrefix(rest[end:], ".")
		}
	}
	return p, nil
}

// Lookup evaluates the path against a decoded JSON payload and the raw
// event's headers. An array met where a name is wanted yields its first
// element's field, as the reference system does; a path that leads
// nowhere reports false.
func (p Path) Lookup(payload any, headers http.Header) (any, bool) {
	if p.header != "" {
		v := headers.Get(p.header)
		return v, v != ""
	}
	cur := payload
	for _, st := range p.steps {
		if st.isIndex {
			list, ok := cur.([]any)
			if !ok || st.index >= len(list) {
				return nil, false
			}
			cur = list[st.index]
			continue
		}
		if list, ok := cur.([]any); ok && len(list) > 0 {
			cur = list[0]
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[st.name]; !ok {
			return nil, false
		}
	}
	if list, ok := cur.([]any); ok && len(p.steps) > 0 && len(list) > 0 && !p.steps[len(p.steps)-1].isIndex {
		cur = list[0]
	}
	return cur, cur != nil
}

// Text renders a looked-up value as an event's field: strings as they
// are, numbers and booleans as their JSON.
func Text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
