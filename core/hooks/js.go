package hooks

import (
	"context"
	"encoding/json"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/jsfunc"
)

// JSName is the JavaScript hook's name (the reference's js_sandbox); its
// one tool is JSTool.
const (
	JSName = "js_sandbox"
	JSTool = "execute_js"
)

// JS returns the JavaScript hook: it runs a snippet in a fresh goja
// runtime with jsfunc's limits and returns {ok, result, logs, started,
// ended, duration_ms, error}. A script that throws or runs past its
// budget is a result with ok false, not a failed task, so that a model
// can read the error and try again.
//
// The code is the model's "code" argument, a hook task's static
// args.code, or else a hook task's string input. The task's input is the
// script's global input (for a model's call, its other arguments).
//
// It runs inside the calling process: for the CLI, whose user owns
// what runs. The server does not register it (DESIGN.md, "User
// JavaScript is isolated").
func JS(sandbox *jsfunc.Sandbox, limits jsfunc.Limits) Hook {
	tool := oneStringTool(JSTool, "Runs a JavaScript snippet (ES5.1 and most of ES6, strict mode, no modules, no network, no timers) and returns "+
		"its result: the global result if set, else the last statement's value; console.log lines are returned too.", "code", "The JavaScript to run.")
	return &funcHook{tool: tool, call: func(ctx context.Context, call core.HookCall) (core.Value, error) {
		code, input := "", any(nil)
		switch in := call.Input.Data.(type) {
		case map[string]any:
			code, _ = in["code"].(string)
			rest := map[string]any{}
			for k, v := range in {
				if k != "code" {
					rest[k] = v
				}
			}
			input = rest
		default:
			if call.Input.Type != "" && call.Input.Type != core.TypeNil {
				input = jsInput(call.Input)
			}
		}
		if c := call.Args["code"]; c != "" && code == "" {
			code = c
		} else if code == "" {
			if s, ok := input.(string); ok {
				code, input = s, nil
			}
		}
		if code == "" {
			return core.Value{}, core.Errorf(core.EINVALID, "%s needs code (the code argument, hook.args.code or a string input)", JSName)
		}
		lim := limits // a call's timeout is its own, not every later call's
		if d, err := time.ParseDuration(call.Args["timeout"]); err == nil && d > 0 {
			lim.Timeout = d
		}
		res := map[string]any{"ok": false, "logs": []string{}}
		prog, err := jsfunc.Compile(JSTool, code)
		started := time.Now()
		if err != nil {
			res["error"], res["started"], res["ended"] = err.Error(), started, started
			return core.Value{Type: core.TypeJSON, Data: jsonData(res)}, nil
		}
		out := sandbox.Run(ctx, prog, map[string]any{"input": input}, lim)
		res["result"], res["started"], res["ended"] = out.Result, out.Started, out.Started.Add(out.Duration)
		res["duration_ms"] = out.Duration.Milliseconds()
		if out.Logs != nil {
			res["logs"] = out.Logs
		}
		if out.Err != nil {
			res["error"] = out.Err.Error()
		} else {
			res["ok"] = true
		}
		return core.Value{Type: core.TypeJSON, Data: jsonData(res)}, nil
	}}
}

// jsInput is a task input as the script's input global: text stays
// text, structured values go as their JSON.
func jsInput(v core.Value) any {
	if s, ok := v.Data.(string); ok {
		return s
	}
	return jsonData(v.Data)
}

// jsonData is v as encoding/json decodes its JSON: the form a json value
// keeps across a checkpoint.
func jsonData(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}
