package jsfunc

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dop251/goja"
)

// hardening wraps the built-ins that turn a few bytes of script into
// gigabytes in one native call (which no interrupt stops), removes the
// raw buffers, and freezes the intrinsics so that a script cannot change
// what the next line, or a builtin, relies on. It runs before the user's
// script, in the same fresh runtime.
const hardening = `(function (MAXS, MAXA) {
  "use strict";
  var g = this;
  function def(o, name, fn) {
    Object.defineProperty(o, name, {value: fn, writable: false, configurable: false, enumerable: false});
  }
  var sp = String.prototype, rep = sp.repeat, padS = sp.padStart, padE = sp.padEnd;
  def(sp, "repeat", function repeat(n) {
    if (String(this).length * Number(n) > MAXS) throw new RangeError("repeat: the string would be longer than " + MAXS + " characters");
    return rep.call(this, n);
  });
  def(sp, "padStart", function padStart(n, s) {
    if (Number(n) > MAXS) throw new RangeError("padStart: longer than " + MAXS + " characters");
    return padS.call(this, n, s);
  });
  def(sp, "padEnd", function padEnd(n, s) {
    if (Number(n) > MAXS) throw new RangeError("padEnd: longer than " + MAXS + " characters");
    return padE.call(this, n, s);
  });
  var ap = Array.prototype, fill = ap.fill, join = ap.join, from = Array.from, A = Array;
  def(ap, "fill", function () {
    if (this.length > MAXA) throw new RangeError("fill: more than " + MAXA + " elements");
    return fill.apply(this, arguments);
  });
  def(ap, "join", function (sep) {
    if (this.length > MAXA) throw new RangeError("join: more than " + MAXA + " elements");
    return join.call(this, sep);
  });
  var SafeArray = function Array() {
    if (arguments.length === 1 && typeof arguments[0] === "number" && arguments[0] > MAXA)
      throw new RangeError("Array: more than " + MAXA + " elements");
    return new.target ? Reflect.construct(A, arguments, new.target) : A.apply(null, arguments);
  };
  SafeArray.prototype = ap;
  def(SafeArray, "isArray", A.isArray);
  def(SafeArray, "of", A.of);
  def(SafeArray, "from", function (x, f, t) {
    if (x != null && Number(x.length) > MAXA) throw new RangeError("Array.from: more than " + MAXA + " elements");
    return from.call(A, x, f, t);
  });
  def(ap, "constructor", SafeArray);
  g.Array = SafeArray;
  ["ArrayBuffer", "SharedArrayBuffer", "DataView", "Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array",
   "Uint16Array", "Int32Array", "Uint32Array", "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array",
   "WebAssembly"].forEach(function (n) { delete g[n]; });
  [Object, SafeArray, String, Number, Boolean, Function, RegExp, Date, Promise, Error, TypeError, RangeError,
   SyntaxError, ReferenceError, Symbol, Map, Set, WeakMap, WeakSet, Reflect, Proxy].forEach(function (c) {
    Object.freeze(c);
    if (c.prototype) Object.freeze(c.prototype);
  });
  Object.freeze(Math);
  Object.freeze(JSON);
  Object.freeze(g.console);
}).call(this, %d, %d);`

// runtime is a goja runtime made ready for scripts: console, builtins
// and the hardening installed once. The fields after vm are the current
// run's.
type runtime struct {
	vm     *goja.Runtime
	parse  goja.Callable
	logs   *logSink
	host   Host
	ctx    context.Context
	budget *budget
	calls  int
}

// newRuntime makes a runtime with console and the builtins, hardened.
func (s *Sandbox) newRuntime(stack int, builtins []string) (*runtime, error) {
	vm := goja.New()
	vm.SetMaxCallStackSize(stack)
	rt := &runtime{vm: vm, logs: &logSink{}}
	console := vm.NewObject()
	log := func(call goja.FunctionCall) goja.Value {
		parts := make([]string, len(call.Arguments))
		for i, a := range call.Arguments {
			if _, isObj := a.(*goja.Object); !isObj {
				// A primitive prints as JavaScript prints it; an object
				// goes through the bounded export (goja's own Export
				// recurses without bound on a value built to make it).
				parts[i] = a.String()
				continue
			}
			b, err := json.Marshal(export(vm, a))
			if err != nil {
				parts[i] = a.String()
				continue
			}
			parts[i] = string(b)
		}
		rt.logs.add(strings.Join(parts, " "))
		return goja.Undefined()
	}
	for _, name := range []string{"log", "info", "warn", "error", "debug"} {
		if err := console.Set(name, log); err != nil {
			return nil, err
		}
	}
	if err := vm.Set("console", console); err != nil {
		return nil, err
	}
	parse, ok := goja.AssertFunction(vm.Get("JSON").ToObject(vm).Get("parse"))
	if !ok {
		return nil, fmt.Errorf("JSON.parse is missing")
	}
	rt.parse = parse
	if err := rt.bindBuiltins(builtins); err != nil {
		return nil, err
	}
	if _, err := vm.RunProgram(s.hardeningProgram()); err != nil {
		return nil, err
	}
	return rt, nil
}

// begin starts a run: fresh logs, its host, context and budget.
func (rt *runtime) begin(ctx context.Context, host Host, b *budget) {
	rt.logs, rt.host, rt.ctx, rt.budget, rt.calls = &logSink{}, host, ctx, b, 0
}

// setGlobals defines the run's globals and clears result.
func (rt *runtime) setGlobals(globals map[string]any) error {
	for name, v := range globals {
		// Values go in as JSON, so that the script gets plain JS values
		// and never a Go map or struct it could reach into.
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("global %s: %w", name, err)
		}
		jv, err := rt.parse(goja.Undefined(), rt.vm.ToValue(string(b)))
		if err != nil {
			return fmt.Errorf("global %s: %w", name, err)
		}
		if err := rt.define(name, jv); err != nil {
			return err
		}
	}
	return rt.define("result", goja.Undefined())
}

// define sets a global as a plain data property, which calls no accessor
// a script of an earlier run may have put there; one it made
// non-configurable cannot be redefined, and the run fails.
func (rt *runtime) define(name string, v goja.Value) error {
	if err := rt.vm.GlobalObject().DefineDataProperty(name, v, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE); err != nil {
		return fmt.Errorf("global %s: %w", name, err)
	}
	return nil
}
