package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// maxDepth caps the nesting of a request body. It is checked on the raw
// bytes before a JSON body is decoded, so that a deeply nested body costs
// one scan, not a deep recursion.
const maxDepth = 64

// readBody reads the whole body, within the limit withBodyLimit set.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	data, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, &requestError{status: http.StatusRequestEntityTooLarge, code: core.EINVALID,
			msg: fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit)}
	}
	if err != nil {
		return nil, badRequest("", "read request body: %v", err)
	}
	return data, nil
}

// bodyFormat tells from the Content-Type how a body is encoded. Like the
// reference: YAML under application/yaml, text/yaml and
// application/x-yaml, base64-encoded YAML with ";encoding=base64" or as
// application/x-yaml-base64, JSON otherwise (an empty type included).
func bodyFormat(contentType string) (isYAML, isBase64 bool) {
	if contentType == "" {
		return false, false
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false, false
	}
	switch mt {
	case "application/yaml", "text/yaml", "application/x-yaml":
		return true, strings.EqualFold(params["encoding"], "base64")
	case "application/x-yaml-base64":
		return true, true
	}
	return false, false
}

// parseBody parses a JSON or YAML body into generic values: objects as
// map[string]any, JSON numbers as json.Number. A malformed, empty or too
// deeply nested body is a 400.
func parseBody(r *http.Request) (any, error) {
	data, err := readBody(r)
	if err != nil {
		return nil, err
	}
	isYAML, isBase64 := bodyFormat(r.Header.Get("Content-Type"))
	if isBase64 {
		dec, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(data)))
		if err != nil {
			return nil, badRequest("", "request body is not valid base64: %v", err)
		}
		data = dec
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, badRequest("", "request body is empty")
	}
	var tree any
	if isYAML {
		if err := yaml.Unmarshal(data, &tree); err != nil {
			return nil, badRequest("", "request body is not valid YAML: %v", err)
		}
		tree = core.NormalizeYAML(tree)
		if depth(tree) > maxDepth {
			return nil, badRequest("", "request body is nested deeper than %d levels", maxDepth)
		}
		return tree, nil
	}
	if jsonDepth(data) > maxDepth {
		return nil, badRequest("", "request body is nested deeper than %d levels", maxDepth)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return nil, badRequest("", "request body is not valid JSON: %v (send YAML with Content-Type: application/yaml)", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest("", "request body has data after its JSON value")
	}
	return tree, nil
}

// jsonDepth returns the deepest nesting of objects and arrays in JSON text.
func jsonDepth(data []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range data {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// depth returns the deepest nesting of maps and slices in a generic value.
func depth(v any) int {
	d := 0
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			d = max(d, depth(e))
		}
		return d + 1
	case []any:
		for _, e := range x {
			d = max(d, depth(e))
		}
		return d + 1
	}
	return 0
}

// object checks the fields of a body that must be an object: every key,
// after aliases are mapped to their canonical names, must be known. An
// unknown field is a 422 naming it and the closest known field; giving a
// field under two names is a 422 too. It returns the object with canonical
// keys.
func object(tree any, known []string, aliases map[string]string) (map[string]any, error) {
	m, ok := tree.(map[string]any)
	if !ok {
		return nil, invalid("", "request body must be an object, got %s", core.DescribeJSON(tree))
	}
	spellings := make(map[string]string, len(known)+len(aliases))
	for _, k := range known {
		spellings[k] = k
	}
	for alias, k := range aliases {
		spellings[alias] = k
	}
	out, bad, err := core.CanonicalFields(m, spellings)
	if err != nil {
		return nil, invalid(bad, "%s", err.Error())
	}
	return out, nil
}

// decodeInto decodes the body into dst, a pointer to a struct whose json
// tags name the known fields, accepting aliases (alias -> json name).
func decodeInto(r *http.Request, dst any, aliases map[string]string) error {
	tree, err := parseBody(r)
	if err != nil {
		return err
	}
	m, err := object(tree, jsonFields(dst), aliases)
	if err != nil {
		return err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return badRequest("", "re-encode request body: %v", err)
	}
	if err := json.Unmarshal(b, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return invalid(te.Field, "%s: want %s, got %s", te.Field, kindName(te.Type), te.Value)
		}
		return invalid("", "%v", err)
	}
	return nil
}

// jsonFields lists the json names of the fields of the struct dst points to.
func jsonFields(dst any) []string {
	t := reflect.TypeOf(dst).Elem()
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// kindName names a Go type the way a JSON user thinks of it.
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// limitParam reads ?limit: 1 to core.MaxPageSize, or 0 when absent.
func limitParam(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > core.MaxPageSize {
		return 0, badRequest("limit", "limit %q: want an integer from 1 to %d", s, core.MaxPageSize)
	}
	return n, nil
}

// listQuery reads ?limit and ?cursor. Limit is 1 to core.MaxPageSize
// (absent: core.DefaultPageSize); the cursor is one this server returned
// in X-Next-Cursor, or an RFC 3339 timestamp. Anything else is a 400.
func listQuery(r *http.Request) (core.ListQuery, error) {
	q := core.ListQuery{Cursor: r.URL.Query().Get("cursor")}
	var err error
	if q.Limit, err = limitParam(r); err != nil {
		return q, err
	}
	if _, _, err := core.DecodeCursor(q.Cursor); err != nil {
		return q, badRequest("cursor", "%v", err)
	}
	return q, nil
}

// NextCursorHeader carries the cursor of the next page of a list; it is
// absent on the last page. List bodies stay bare arrays, as in the
// reference.
const NextCursorHeader = "X-Next-Cursor"

// writeList answers one page of a list.
func writeList[T any](w http.ResponseWriter, items []T, next string) {
	if items == nil {
		items = []T{}
	}
	if next != "" {
		w.Header().Set(NextCursorHeader, next)
	}
	webapi.WriteJSON(w, http.StatusOK, items)
}
