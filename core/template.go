package core

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"
	"time"
)

// macroPattern matches {{ns}} and {{ns:payload}} for the macro namespaces.
// Go template actions never start with these words followed by ':' or
// '}}', so the two syntaxes do not collide.
var macroPattern = regexp.MustCompile(`\{\{\s*(var|now|chain|hookservice)(?::([^{}]*?))?\s*\}\}`)

// macroEnv is what macros expand from.
type macroEnv struct {
	tenant string
	vars   map[string]string
	now    time.Time
	chain  string
	tools  Tools
}

// expandMacros replaces the macros in text. In a Go template (quote true)
// each expansion becomes a quoted string action, so a value containing
// "{{" is printed, never interpreted.
func (m macroEnv) expandMacros(ctx context.Context, text string, quote bool) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	var firstErr error
	out := macroPattern.ReplaceAllStringFunc(text, func(match string) string {
		sub := macroPattern.FindStringSubmatch(match)
		val, err := m.expand(ctx, sub[1], strings.TrimSpace(sub[2]))
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			return match
		}
		if quote {
			return "{{" + strconv.Quote(val) + "}}"
		}
		return val
	})
	return out, firstErr
}

func (m macroEnv) expand(ctx context.Context, ns, payload string) (string, error) {
	switch ns {
	case "var":
		return m.vars[payload], nil
	case "now":
		layout := time.RFC3339
		if payload != "" {
			layout = payload
		}
		return m.now.Format(layout), nil
	case "chain":
		return m.chain, nil
	case "hookservice":
		return m.hookservice(ctx, payload)
	}
	return "", fmt.Errorf("unknown macro namespace %q", ns)
}

// hookservice expands {{hookservice:list}}, {{hookservice:hooks}} and
// {{hookservice:tools NAME}} as JSON.
func (m macroEnv) hookservice(ctx context.Context, payload string) (string, error) {
	if m.tools == nil {
		return "", Errorf(EINVALID, "{{hookservice:%s}} needs hooks, and none are configured", payload)
	}
	verb, arg, _ := strings.Cut(payload, " ")
	arg = strings.TrimSpace(arg)
	var v any
	switch verb {
	case "list":
		names, err := m.tools.Hooks(ctx, m.tenant)
		if err != nil {
			return "", err
		}
		all := map[string][]string{}
		for _, h := range names {
			tools, err := m.tools.ToolsOf(ctx, m.tenant, h)
			if err != nil {
				continue // a broken hook is left out of the listing
			}
			all[h] = toolNames(tools)
		}
		v = all
	case "hooks":
		names, err := m.tools.Hooks(ctx, m.tenant)
		if err != nil {
			return "", err
		}
		v = names
	case "tools":
		tools, err := m.tools.ToolsOf(ctx, m.tenant, arg)
		if err != nil {
			return "", err
		}
		v = toolNames(tools)
	default:
		return "", Errorf(EINVALID, "unknown hookservice macro %q (want list, hooks or tools NAME)", verb)
	}
	b, err := json.Marshal(v)
	return string(b), err
}

func toolNames(tools []Tool) []string {
	out := make([]string, len(tools))
	for i, t := range tools {
		out[i] = t.Function.Name
	}
	return out
}

// checkMacros reports malformed macros without expanding them.
func checkMacros(text string) []error {
	var errs []error
	for _, sub := range macroPattern.FindAllStringSubmatch(text, -1) {
		ns, payload := sub[1], strings.TrimSpace(sub[2])
		switch ns {
		case "var":
			if payload == "" {
				errs = append(errs, fmt.Errorf("macro {{var:NAME}} needs a name"))
			}
		case "chain":
			if payload != "id" {
				errs = append(errs, fmt.Errorf("unknown macro {{chain:%s}} (only {{chain:id}} exists)", payload))
			}
		case "hookservice":
			verb, arg, _ := strings.Cut(payload, " ")
			switch {
			case verb == "list" || verb == "hooks":
			case verb == "tools" && strings.TrimSpace(arg) != "":
			default:
				errs = append(errs, fmt.Errorf("unknown macro {{hookservice:%s}} (want list, hooks or tools NAME)", payload))
			}
		}
	}
	return errs
}

// templateFuncs are the functions templates may call besides text/template's
// built-ins.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// parseTemplate parses text as a Go template that errors on a missing
// variable instead of printing "<no value>". The trees are parsed with
// the names of checkFuncs and added to the template, which spares
// text/template's Parse building its table of functions again for every
// template.
func parseTemplate(name, text string) (*template.Template, error) {
	trees, err := parse.Parse(name, text, "", "", checkFuncs)
	if err != nil {
		return nil, err
	}
	t := template.New(name).Funcs(templateFuncs).Option("missingkey=error")
	for n, tree := range trees {
		if _, err := t.AddParseTree(n, tree); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// checkFuncs are the functions a template may call, for checkTemplate:
// text/template's own and templateFuncs.
var checkFuncs = func() map[string]any {
	m := map[string]any{}
	for _, name := range []string{"and", "or", "not", "len", "index", "slice", "print", "printf", "println",
		"html", "js", "urlquery", "call", "eq", "ne", "lt", "le", "gt", "ge"} {
		m[name] = true // the parser asks only whether a name is there
	}
	for name, fn := range templateFuncs {
		m[name] = fn
	}
	return m
}()

// checkTemplate parses text with its macros replaced by placeholders. It
// parses the tree only, without making a template (which would build
// text/template's table of functions for each one): validating a chain
// checks every task's template.
func checkTemplate(text string) error {
	masked := macroPattern.ReplaceAllString(text, `{{"macro"}}`)
	if _, err := parse.Parse("check", masked, "", "", checkFuncs); err != nil {
		return fmt.Errorf("template: %s", strings.TrimPrefix(err.Error(), "template: check:"))
	}
	return nil
}

// templateCache keeps parsed templates by their text, so a task that runs
// often (a loop, a popular chain) is not parsed on every step. Parsed
// templates are safe for concurrent execution.
type templateCache struct {
	mu sync.Mutex
	m  map[string]*template.Template
}

// maxCachedTemplates bounds the cache; it is emptied when full.
const maxCachedTemplates = 1024

func (c *templateCache) parse(name, text string) (*template.Template, error) {
	key := name + "\x00" + text
	c.mu.Lock()
	t, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := parseTemplate(name, text)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedTemplates {
		c.m = make(map[string]*template.Template)
	}
	c.m[key] = t
	c.mu.Unlock()
	return t, nil
}

// renderTemplate expands macros, then executes text over data.
func (r *stepRun) renderTemplate(ctx context.Context, name, text string, data any) (string, error) {
	expanded, err := r.macros.expandMacros(ctx, text, true)
	if err != nil {
		return "", err
	}
	if !strings.Contains(expanded, "{{") {
		return expanded, nil
	}
	tmpl, err := r.e.templates.parse(name, expanded)
	if err != nil {
		return "", WrapError(EINVALID, err, "%s", name)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return "", WrapError(EINVALID, err, "%s", name)
	}
	return buf.String(), nil
}

// templateData builds the variables a template sees: input,
// previous_output and every task's output, in their Go forms.
func templateData(e *Execution) map[string]any {
	data := make(map[string]any, len(e.Vars)+2)
	for k, v := range e.Vars {
		data[k] = templateValue(v)
	}
	data[VarInput] = templateValue(e.Input)
	data[VarPreviousOutput] = templateValue(e.previousOutput())
	return data
}

// templateValue is a value's Go form as templates see it: nil as ""
// rather than text/template's "<no value>", and JSON numbers (kept as
// json.Number in storage, for their precision) as int64 or float64, so
// that {{if gt .input.count 3}} compares numbers.
func templateValue(v Value) any {
	if v.Data == nil {
		return ""
	}
	if v.Type == TypeJSON || v.Type == TypeAny {
		return templateJSON(v.Data)
	}
	return v.Data
}

func templateJSON(x any) any {
	switch t := x.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		if f, err := t.Float64(); err == nil {
			return f
		}
		return t.String()
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, v := range t {
			out[k] = templateJSON(v)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, v := range t {
			out[i] = templateJSON(v)
		}
		return out
	}
	return x
}
