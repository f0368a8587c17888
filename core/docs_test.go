package core_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/stepwise-run/stepwise/core"
)

// docExample is an example of docs/chains.md: a chain in a fenced block,
// preceded by an HTML comment holding what to run it with and expect.
type docExample struct {
	Name      string
	Line      int
	Chain     string
	InputType string `yaml:"input_type"`
	Input     any    `yaml:"input"`
	Vars      map[string]string
	Replies   []struct {
		Match string
		Text  string
		Error string
		Times int
		Calls []struct {
			ID, Name  string
			Arguments map[string]any
		}
	}
	// Resume lists the inputs the execution is resumed with, in order, each
	// once it waits, and what it must be waiting for then.
	Resume []struct {
		Waiting   string // the kind of wait
		Prompt    *string
		Calls     []string // the names of the client's tools called
		Input     any
		InputType string `yaml:"input_type"`
	}
	Output         *string
	OutputContains string `yaml:"output_contains"`
	OutputJSON     any    `yaml:"output_json"`
	OutputType     string `yaml:"output_type"`
	Steps          []string
	Status         string
	ErrorContains  string `yaml:"error_contains"`
	Invalid        string // the chain must fail validation with this message
}

var (
	directivePattern = regexp.MustCompile(`(?s)<!--\s*example:\s*([\w-]+)\n(.*?)-->\s*\n` + "```" + `(yaml|json)\n(.*?)` + "```")
	fencePattern     = regexp.MustCompile("(?s)```(yaml|json)\n(.*?)```")
)

func loadDocExamples(t *testing.T) ([]docExample, string) {
	t.Helper()
	doc, err := os.ReadFile("../docs/chains.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	var out []docExample
	covered := map[int]bool{}
	for _, m := range directivePattern.FindAllStringSubmatchIndex(text, -1) {
		ex := docExample{Name: text[m[2]:m[3]], Line: strings.Count(text[:m[0]], "\n") + 1, Chain: text[m[8]:m[9]]}
		if err := yaml.Unmarshal([]byte(text[m[4]:m[5]]), &ex); err != nil {
			t.Fatalf("docs/chains.md:%d: example %s: bad directive: %v", ex.Line, ex.Name, err)
		}
		covered[m[6]-3] = true // the fence's start
		out = append(out, ex)
	}
	// Every chain shown in a yaml or json block must be a tested example.
	for _, m := range fencePattern.FindAllStringSubmatchIndex(text, -1) {
		body := text[m[4]:m[5]]
		if !covered[m[0]] && (strings.Contains(body, "tasks:") || strings.Contains(body, `"tasks"`)) {
			t.Errorf("docs/chains.md:%d: a chain without an <!-- example: --> directive; every chain shown must be tested", strings.Count(text[:m[0]], "\n")+1)
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d examples in docs/chains.md", len(out))
	}
	return out, text
}

// TestDocExamples runs every example of docs/chains.md.
func TestDocExamples(t *testing.T) {
	examples, _ := loadDocExamples(t)
	names := map[string]bool{}
	for _, ex := range examples {
		t.Run(ex.Name, func(t *testing.T) {
			if names[ex.Name] {
				t.Fatalf("duplicate example name")
			}
			names[ex.Name] = true
			where := fmt.Sprintf("docs/chains.md:%d", ex.Line)
			chain, _, err := core.ParseChain([]byte(ex.Chain))
			if ex.Invalid != "" {
				if err == nil || !strings.Contains(err.Error(), ex.Invalid) {
					t.Fatalf("%s: validation error = %v, want one containing %q", where, err, ex.Invalid)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var replies []*reply
			for _, r := range ex.Replies {
				rp := &reply{match: r.Match, text: r.Text, times: r.Times}
				if r.Error != "" {
					rp.err = core.Errorf(r.Error, "scripted %s error", r.Error)
				}
				for i, c := range r.Calls {
					args, _ := json.Marshal(c.Arguments)
					id := c.ID
					if id == "" {
						id = fmt.Sprintf("call-%d", i+1)
					}
					rp.calls = append(rp.calls, toolCall(id, c.Name, string(args)))
				}
				replies = append(replies, rp)
			}
			typ := core.TypeString
			if ex.InputType != "" {
				typ = core.DataType(ex.InputType)
			}
			var raw any = ex.Input
			if raw == nil && typ == core.TypeString {
				raw = ""
			}
			input, err := core.Coerce(typ, raw)
			if err != nil {
				t.Fatalf("%s: input: %v", where, err)
			}
			h := newHarness(newLLM(replies...))
			run, err := h.engine.Execute(context.Background(), core.StartRequest{Chain: chain, Input: input, TemplateVars: ex.Vars}, nil)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			for i, rs := range ex.Resume {
				w := run.Waiting
				if run.Status != core.StatusWaiting || w == nil || w.Kind != rs.Waiting {
					t.Fatalf("%s: before resume %d: status %s (%+v), waiting %+v; want waiting for %s", where, i+1, run.Status, run.Error, w, rs.Waiting)
				}
				if rs.Prompt != nil && w.Prompt != *rs.Prompt {
					t.Errorf("%s: before resume %d: prompt %q, want %q", where, i+1, w.Prompt, *rs.Prompt)
				}
				if rs.Calls != nil {
					var names []string
					for _, c := range w.ToolCalls {
						names = append(names, c.Function.Name)
					}
					if !reflect.DeepEqual(names, rs.Calls) {
						t.Errorf("%s: before resume %d: calls %v, want %v", where, i+1, names, rs.Calls)
					}
				}
				rtyp := core.TypeString
				if rs.InputType != "" {
					rtyp = core.DataType(rs.InputType)
				}
				in, err := core.Coerce(rtyp, rs.Input)
				if err != nil {
					t.Fatalf("%s: resume %d: input: %v", where, i+1, err)
				}
				if _, err := h.engine.Resume(context.Background(), run.Tenant, run.ID, in); err != nil {
					t.Fatalf("%s: resume %d: %v", where, i+1, err)
				}
				if run, err = h.engine.Run(context.Background(), run.Tenant, run.ID, nil); err != nil {
					t.Fatalf("%s: run after resume %d: %v", where, i+1, err)
				}
			}
			steps, _ := h.store.ListSteps(context.Background(), run.Tenant, run.ID, 0, 0)
			wantStatus := core.StatusSucceeded
			if ex.Status != "" {
				wantStatus = core.Status(ex.Status)
			}
			if run.Status != wantStatus {
				t.Fatalf("%s: status %s (%+v), want %s", where, run.Status, run.Error, wantStatus)
			}
			if ex.ErrorContains != "" && (run.Error == nil || !strings.Contains(run.Error.Message, ex.ErrorContains)) {
				t.Errorf("%s: error %+v, want it to contain %q", where, run.Error, ex.ErrorContains)
			}
			if ex.Steps != nil {
				var got []string
				for _, s := range steps {
					got = append(got, s.TaskID)
				}
				if !reflect.DeepEqual(got, ex.Steps) {
					t.Errorf("%s: steps %v, want %v", where, got, ex.Steps)
				}
			}
			if ex.Output != nil && run.Output.Display() != *ex.Output {
				t.Errorf("%s: output %q, want %q", where, run.Output.Display(), *ex.Output)
			}
			if ex.OutputContains != "" && !strings.Contains(run.Output.Display(), ex.OutputContains) {
				t.Errorf("%s: output %q, want it to contain %q", where, run.Output.Display(), ex.OutputContains)
			}
			if ex.OutputType != "" && string(run.Output.Type) != ex.OutputType {
				t.Errorf("%s: output type %s, want %s", where, run.Output.Type, ex.OutputType)
			}
			if ex.OutputJSON != nil {
				got, _ := json.Marshal(run.Output.Data)
				want, _ := json.Marshal(ex.OutputJSON)
				if !jsonEqual(got, want) {
					t.Errorf("%s: output %s, want %s", where, got, want)
				}
			}
		})
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}

// TestDocsCoverTheLanguage checks that docs/chains.md documents, and runs
// an example of, every field, handler and alias, operator, compose
// strategy, data type and macro.
func TestDocsCoverTheLanguage(t *testing.T) {
	examples, text := loadDocExamples(t)
	seen := map[string]bool{}
	var walk func(v any, obj string)
	walk = func(v any, parent string) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				seen["field:"+k] = true
				if s, ok := val.(string); ok {
					seen[k+":"+s] = true
				}
				walk(val, k)
			}
		case []any:
			for _, val := range x {
				walk(val, parent)
			}
		}
	}
	inputTypes := map[string]bool{}
	for _, ex := range examples {
		var tree any
		if err := yaml.Unmarshal([]byte(ex.Chain), &tree); err != nil {
			t.Fatalf("example %s: %v", ex.Name, err)
		}
		walk(tree, "")
		inputTypes[ex.InputType] = true
		if ex.OutputType != "" {
			inputTypes[ex.OutputType] = true
		}
	}
	var missing []string
	need := func(key, what string) {
		if !seen[key] {
			missing = append(missing, what)
		}
	}
	fields := core.Fields()
	var objs []string
	for obj := range fields {
		objs = append(objs, obj)
	}
	sort.Strings(objs)
	for _, obj := range objs {
		for _, f := range fields[obj] {
			need("field:"+f, "an example using field "+obj+"."+f)
			if !strings.Contains(text, "`"+f+"`") {
				missing = append(missing, "documentation of field `"+f+"`")
			}
		}
	}
	for _, h := range core.Handlers() {
		need("handler:"+h, "an example of handler "+h)
	}
	for alias := range core.HandlerAliases() {
		if !seen["handler:"+alias] && !seen["type:"+alias] {
			missing = append(missing, "an example of handler alias "+alias)
		}
	}
	for _, op := range core.Operators() {
		need("operator:"+op, "an example of operator "+op)
	}
	for sym := range core.OperatorAliases() {
		need("operator:"+sym, "an example of operator "+sym)
	}
	for _, s := range core.Strategies() {
		need("strategy:"+s, "an example of compose strategy "+s)
	}
	for _, dt := range core.DataTypes() {
		if !inputTypes[string(dt)] && !(dt == core.TypeString && inputTypes[""]) {
			missing = append(missing, "an example with input_type or output_type "+string(dt))
		}
		if !strings.Contains(text, "`"+string(dt)+"`") {
			missing = append(missing, "documentation of data type `"+string(dt)+"`")
		}
	}
	for _, macro := range []string{"{{var:", "{{now}}", "{{now:", "{{chain:id}}", "{{hookservice:list}}", "{{hookservice:hooks}}", "{{hookservice:tools "} {
		found := slices.ContainsFunc(examples, func(ex docExample) bool { return strings.Contains(ex.Chain, macro) })
		if !found {
			missing = append(missing, "an example of macro "+macro)
		}
	}
	for _, legacy := range []string{"type", "systemInstruction", "execute_config.tools", "hook.type"} {
		if !strings.Contains(text, "`"+legacy+"`") {
			missing = append(missing, "documentation of alias `"+legacy+"`")
		}
	}
	for _, m := range missing {
		t.Error("docs/chains.md lacks " + m)
	}
}
