package core

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Validate checks a decoded chain before it runs or is stored: ids,
// handlers and their required fields, goto/on_failure/input_var/with_var
// targets, operators and their operands, compose strategies, templates,
// and that every task is reachable from the first. All problems are
// reported together in a *ValidationError wrapped with code EINVALID.
func Validate(c *Chain) error {
	var ps []Problem
	add := func(task, path, format string, args ...any) {
		ps = append(ps, Problem{TaskID: task, Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if c == nil {
		return invalidChain([]Problem{{Message: "no chain given"}})
	}
	if strings.TrimSpace(c.ID) == "" {
		add("", "id", "missing required field")
	}
	if CheckRoutingPolicy("routing_policy", c.RoutingPolicy) != nil {
		add("", "routing_policy", "%s", unknownPolicy(c.RoutingPolicy))
	}
	if len(c.Tasks) == 0 {
		add("", "tasks", "a chain needs at least one task")
		return invalidChain(ps)
	}
	ids := map[string]int{}
	for i, t := range c.Tasks {
		path := fmt.Sprintf("tasks[%d]", i)
		switch {
		case t == nil:
			add("", path, "task is null")
			continue
		case strings.TrimSpace(t.ID) == "":
			add("", path+".id", "missing required field")
		case t.ID == End:
			add(t.ID, path+".id", "%q is reserved for the end of the chain", End)
		default:
			if first, dup := ids[t.ID]; dup {
				add(t.ID, path+".id", "duplicate task id (also tasks[%d])", first)
			} else {
				ids[t.ID] = i
			}
		}
	}
	vars := func(name string) bool {
		_, isTask := ids[name]
		return isTask || name == VarInput || name == VarPreviousOutput
	}
	known := func() []string {
		out := []string{VarInput, VarPreviousOutput}
		for id := range ids {
			out = append(out, id)
		}
		sort.Strings(out[2:])
		return out
	}
	for i, t := range c.Tasks {
		if t == nil {
			continue
		}
		path := fmt.Sprintf("tasks[%d]", i)
		validateHandler(t, path, add)
		if t.InputVar != "" && !vars(t.InputVar) {
			add(t.ID, path+".input_var", "unknown variable %q%s", t.InputVar, Suggest(t.InputVar, known()))
		}
		for _, tf := range []struct{ name, text string }{
			{"prompt_template", t.PromptTemplate},
			{"print", t.Print},
			{"output_template", t.OutputTemplate},
		} {
			if tf.text == "" {
				continue
			}
			if err := checkTemplate(tf.text); err != nil {
				add(t.ID, path+"."+tf.name, "%v", err)
			}
		}
		for _, mf := range []struct{ name, text string }{
			{"system_instruction", t.SystemInstruction},
			{"prompt_template", t.PromptTemplate},
			{"print", t.Print},
			{"output_template", t.OutputTemplate},
		} {
			for _, err := range checkMacros(mf.text) {
				add(t.ID, path+"."+mf.name, "%v", err)
			}
		}
		if tr := t.Transition; tr != nil {
			if tr.OnFailure != "" {
				if _, ok := ids[tr.OnFailure]; !ok {
					add(t.ID, path+".transition.on_failure", "unknown task %q%s", tr.OnFailure, Suggest(tr.OnFailure, keys(ids)))
				}
			}
			for j, b := range tr.Branches {
				bpath := fmt.Sprintf("%s.transition.branches[%d]", path, j)
				if b == nil {
					add(t.ID, bpath, "branch is null")
					continue
				}
				validateBranch(t, b, bpath, ids, vars, known, add)
			}
		}
	}
	for _, id := range unreachable(c) {
		add(id, fmt.Sprintf("tasks[%d]", ids[id]), "unreachable: no goto or on_failure leads here from the first task %q", c.Tasks[0].ID)
	}
	return invalidChain(ps)
}

type addFunc func(task, path, format string, args ...any)

func validateHandler(t *Task, path string, add addFunc) {
	switch t.Handler {
	case "":
		add(t.ID, path+".handler", "missing required field")
	case HandlerPromptToCondition:
		if len(t.ValidConditions) == 0 {
			add(t.ID, path+".valid_conditions", "missing required field: %s needs the answers it accepts, e.g. {\"yes\": true, \"no\": false}", t.Handler)
		}
	case HandlerHook:
		if t.Hook == nil || t.Hook.Name == "" {
			add(t.ID, path+".hook.name", "missing required field: a hook task names the hook it calls")
		}
	case HandlerTextToEmbedding:
		if ec := t.ExecuteConfig; ec != nil && (len(ec.Models) > 1 || len(ec.Providers) > 1) {
			add(t.ID, path+".execute_config", "text_to_embedding takes at most one model and one provider")
		}
	default:
		if !slices.Contains(Handlers(), t.Handler) {
			add(t.ID, path+".handler", "unknown handler %q%s", t.Handler, Suggest(t.Handler, append(Handlers(), keys(handlerAliases)...)))
		}
	}
}

func validateBranch(t *Task, b *Branch, path string, ids map[string]int, vars func(string) bool, known func() []string, add addFunc) {
	switch b.Operator {
	case OpGt, OpLt:
		if _, ok := parseNumber(b.When); !ok {
			add(t.ID, path+".when", "operator %s compares numbers; %q is not a number", b.Operator, b.When)
		}
	case OpInRange:
		if _, _, ok := parseRange(b.When); !ok {
			add(t.ID, path+".when", "in_range wants \"min-max\", e.g. \"1-5\"; got %q", b.When)
		}
	case OpEquals, OpContains, OpStartsWith, OpEndsWith, OpDefault:
	case "":
		add(t.ID, path+".operator", "missing required field")
	default:
		add(t.ID, path+".operator", "unknown operator %q%s (known: %s)", b.Operator, Suggest(b.Operator, operators), strings.Join(operators, ", "))
	}
	if b.Goto != "" && b.Goto != End {
		if _, ok := ids[b.Goto]; !ok {
			add(t.ID, path+".goto", "unknown task %q%s", b.Goto, Suggest(b.Goto, append(keys(ids), End)))
		}
	}
	if c := b.Compose; c != nil {
		if c.WithVar == "" {
			add(t.ID, path+".compose.with_var", "missing required field")
		} else if !vars(c.WithVar) {
			add(t.ID, path+".compose.with_var", "unknown variable %q%s", c.WithVar, Suggest(c.WithVar, known()))
		}
		if c.Strategy != "" && !slices.Contains(strategies, c.Strategy) {
			add(t.ID, path+".compose.strategy", "unknown strategy %q%s (known: %s)", c.Strategy, Suggest(c.Strategy, strategies), strings.Join(strategies, ", "))
		}
	}
}

// unreachable returns the ids of tasks no path from the first task leads
// to, in chain order.
func unreachable(c *Chain) []string {
	if c.Tasks[0] == nil {
		return nil // reported as a null task already
	}
	seen := map[string]bool{}
	queue := []string{c.Tasks[0].ID}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		if seen[id] {
			continue
		}
		seen[id] = true
		t := c.Task(id)
		if t == nil || t.Transition == nil {
			continue
		}
		if t.Transition.OnFailure != "" {
			queue = append(queue, t.Transition.OnFailure)
		}
		for _, b := range t.Transition.Branches {
			if b != nil && b.Goto != "" && b.Goto != End {
				queue = append(queue, b.Goto)
			}
		}
	}
	var out []string
	for _, t := range c.Tasks {
		if t != nil && t.ID != "" && !seen[t.ID] {
			out = append(out, t.ID)
		}
	}
	return out
}

// Suggest returns "; did you mean "X"?" for the candidate Closest finds,
// or "" when there is none: the tail of an error message about name.
func Suggest(name string, candidates []string) string {
	if hint := Closest(name, candidates); hint != "" && hint != name {
		return fmt.Sprintf("; did you mean %q?", hint)
	}
	return ""
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
