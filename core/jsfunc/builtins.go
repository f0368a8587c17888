package jsfunc

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/dop251/goja"
)

// maxBuiltinCalls bounds the builtin calls of one run.
const maxBuiltinCalls = 1000

// bindBuiltins defines each name as a function that calls the host with
// its arguments, exported by the bounded walk, and returns the host's
// result as plain JS values, or {success: false, error} when the host
// fails. A builtin cannot throw a Go panic into the script: a panicking
// host is caught here.
func (rt *runtime) bindBuiltins(names []string) error {
	vm, parse := rt.vm, rt.parse
	for _, name := range names {
		name := name
		fn := func(call goja.FunctionCall) goja.Value {
			args := make([]any, len(call.Arguments))
			for i, a := range call.Arguments {
				args[i] = export(vm, a)
			}
			if rt.host == nil {
				panic(vm.NewTypeError("%s is not available here", name))
			}
			// Time in the host does not count against the budget, so a
			// loop of quick failing calls would never spend it: the calls
			// themselves are bounded.
			if rt.calls++; rt.calls > maxBuiltinCalls {
				vm.Interrupt(fmt.Errorf("%w: more than %d builtin calls", ErrInterrupted, maxBuiltinCalls))
				return goja.Undefined()
			}
			rt.budget.stop()
			res, err := callHost(rt.ctx, rt.host, name, args)
			rt.budget.start()
			if err != nil {
				res = map[string]any{"success": false, "error": err.Error()}
			}
			data, err := json.Marshal(res)
			if err != nil {
				data, _ = json.Marshal(map[string]any{"success": false, "error": "the result is not JSON: " + err.Error()})
			}
			v, err := parse(goja.Undefined(), vm.ToValue(string(data)))
			if err != nil {
				panic(vm.NewTypeError("%s: %v", name, err))
			}
			return v
		}
		if err := vm.Set(name, fn); err != nil {
			return err
		}
	}
	return nil
}

func callHost(ctx context.Context, host Host, name string, args []any) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s failed: %v", name, r)
		}
	}()
	return host.Call(ctx, name, args)
}
