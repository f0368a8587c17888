package hooks_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks"
	"github.com/stepwise-run/stepwise/core/jsfunc"
)

func TestJS(t *testing.T) {
	h := hooks.JS(jsfunc.New(), jsfunc.Limits{Timeout: 200 * time.Millisecond})
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		call   core.HookCall
		ok     bool
		result any
		errHas string
	}{
		{"a model's code, its other arguments as input",
			core.HookCall{Tool: hooks.JSTool, Input: core.Value{Type: core.TypeJSON, Data: map[string]any{"code": "input.a * 2", "a": 21.0}}}, true, 42.0, ""},
		{"a hook task's string input is the code",
			core.HookCall{Input: core.String("console.log('x'); result = [1, 2].map(function (n) { return n + 1 })")}, true, []any{2.0, 3.0}, ""},
		{"static code with the task's input",
			core.HookCall{Args: map[string]string{"code": "input.toUpperCase()"}, Input: core.String("shout")}, true, "SHOUT", ""},
		{"a thrown error is a result",
			core.HookCall{Input: core.String("throw new Error('bad pet')")}, false, nil, "bad pet"},
		{"a loop runs out of time",
			core.HookCall{Input: core.String("for (;;) {}")}, false, nil, "budget"},
		{"a call's own timeout",
			core.HookCall{Args: map[string]string{"timeout": "1ms", "code": "var t = Date.now(); while (Date.now() - t < 50) {}; 1"}}, false, nil, "budget"},
		{"the next call has the hook's timeout again",
			core.HookCall{Args: map[string]string{"code": "var t = Date.now(); while (Date.now() - t < 50) {}; 1"}}, true, 1.0, ""},
		{"a syntax error",
			core.HookCall{Input: core.String("function (")}, false, nil, "execute_js"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := h.Call(ctx, tt.call)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := out.Data.(map[string]any)
			if out.Type != core.TypeJSON || m["ok"] != tt.ok {
				t.Fatalf("answer %s %v", out.Type, out.Data)
			}
			if tt.ok && fmt.Sprint(m["result"]) != fmt.Sprint(tt.result) {
				t.Errorf("result %v, want %v", m["result"], tt.result)
			}
			if e, _ := m["error"].(string); !strings.Contains(e, tt.errHas) {
				t.Errorf("error %q, want one about %q", e, tt.errHas)
			}
			for _, k := range []string{"logs", "started", "ended"} {
				if _, ok := m[k]; !ok {
					t.Errorf("no %s in %v", k, m)
				}
			}
		})
	}
	if _, err := h.Call(ctx, core.HookCall{}); core.ErrorCode(err) != core.EINVALID {
		t.Errorf("no code: %v, want EINVALID", err)
	}
}
