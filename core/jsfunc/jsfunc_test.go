package jsfunc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/jsfunc"
)

func run(t *testing.T, src string, limits jsfunc.Limits) jsfunc.Outcome {
	t.Helper()
	p, err := jsfunc.Compile("test.js", src)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return jsfunc.New().Run(context.Background(), p, map[string]any{"input": map[string]any{"n": 3, "name": "ada"}}, limits)
}

func TestResults(t *testing.T) {
	for _, tt := range []struct {
		name, src string
		want      string // the result, printed with %v
	}{
		{"the last statement's value", "1 + 1", "2"},
		{"the global result", "result = {sum: input.n * 2}; 0", "map[sum:6]"},
		{"input is plain JS", "Object.keys(input).sort().join(',')", "n,name"},
		{"a cycle is cut", "var o = {a: 1}; o.self = o; o", "map[a:1 self:[truncated]]"},
		{"functions are left out", "({f: function () {}, x: 1})", "map[x:1]"},
		{"NaN is null", "NaN", "<nil>"},
		{"a date is its text", "typeof new Date(0).toISOString()", "string"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := run(t, tt.src, jsfunc.Limits{})
			if out.Err != nil {
				t.Fatal(out.Err)
			}
			if got := sprint(out.Result); got != tt.want {
				t.Errorf("result %s, want %s", got, tt.want)
			}
		})
	}
	t.Run("console.log is captured", func(t *testing.T) {
		out := run(t, `console.log("hi", {a: [1, 2]}); console.error(3)`, jsfunc.Limits{})
		if out.Err != nil || len(out.Logs) != 2 || out.Logs[0] != `hi {"a":[1,2]}` || out.Logs[1] != "3" {
			t.Errorf("logs %q, error %v", out.Logs, out.Err)
		}
	})
	t.Run("a deep value is cut", func(t *testing.T) {
		out := run(t, `var o = {}; var c = o; for (var i = 0; i < 200; i++) { c.n = {}; c = c.n } o`, jsfunc.Limits{})
		if out.Err != nil || !strings.Contains(sprint(out.Result), "[truncated]") {
			t.Errorf("result %v, %v", out.Result, out.Err)
		}
	})
	t.Run("a large value is cut", func(t *testing.T) {
		out := run(t, `var a = []; for (var i = 0; i < 100000; i++) a.push(i); a`, jsfunc.Limits{})
		list, _ := out.Result.([]any)
		if out.Err != nil || len(list) > 10_001 || list[len(list)-1] != "[truncated]" {
			t.Errorf("%d items, %v", len(list), out.Err)
		}
	})
}

func sprint(v any) string { return fmt.Sprintf("%v", v) }

// TestAbuse runs the cases of reliability.md §2.2 that used to crash or
// hang the process: each now ends with an error, quickly.
func TestAbuse(t *testing.T) {
	for _, tt := range []struct {
		name, src string
		limits    jsfunc.Limits
		want      string
	}{
		{"an endless loop", "for (;;) {}", jsfunc.Limits{Timeout: 100 * time.Millisecond}, "budget"},
		{"a loop that catches", "for (;;) { try { for (;;) {} } catch (e) {} }", jsfunc.Limits{Timeout: 100 * time.Millisecond}, "budget"},
		{"finally that loops", "try { for (;;) {} } finally { for (;;) {} }", jsfunc.Limits{Timeout: 100 * time.Millisecond}, "budget"},
		{"endless recursion", "function f() { return f() } f()", jsfunc.Limits{}, "call stack"},
		{"endless promises", "function f() { Promise.resolve().then(f) } f()", jsfunc.Limits{Timeout: 200 * time.Millisecond}, "budget"},
		{"a terabyte repeat", "'x'.repeat(Math.pow(1024, 4))", jsfunc.Limits{}, "RangeError"},
		{"a 256 MiB repeat", "'x'.repeat(256 * 1024 * 1024)", jsfunc.Limits{}, "RangeError"},
		{"a huge pad", "''.padStart(1e9, 'x')", jsfunc.Limits{}, "RangeError"},
		{"a huge array filled", "new Array(2e8).fill(0)", jsfunc.Limits{}, "RangeError"},
		{"a huge array made by a call", "Array(2e8)", jsfunc.Limits{}, "RangeError"},
		{"a huge array through its constructor", "[].constructor(2e8)", jsfunc.Limits{}, "RangeError"},
		{"a huge array joined", "var a = []; a.length = 1e7; a.join('xxxxxxxxxx')", jsfunc.Limits{}, "RangeError"},
		{"a huge Array.from", "Array.from({length: 1e9})", jsfunc.Limits{}, "RangeError"},
		{"a gigabyte buffer", "new Uint8Array(1 << 30)", jsfunc.Limits{}, "ReferenceError"},
		{"an ArrayBuffer", "new ArrayBuffer(1 << 30)", jsfunc.Limits{}, "ReferenceError"},
		{"polluting a prototype", "Object.prototype.isAdmin = true", jsfunc.Limits{}, "TypeError"},
		{"replacing a guard", "String.prototype.repeat = function () { return 'x' }", jsfunc.Limits{}, "TypeError"},
		{"swapping Array back", "Array = function () {}", jsfunc.Limits{}, ""},
		{"growing the heap", "var a = []; for (;;) a.push('y'.repeat(1024) + a.length)", jsfunc.Limits{Timeout: 10 * time.Second, MaxHeapGrowth: 32 << 20}, "MiB"},
		{"a circular JSON.stringify", "var o = {}; o.o = o; JSON.stringify(o)", jsfunc.Limits{}, "TypeError"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := run(t, tt.src, tt.limits)
			if tt.want == "" {
				// Assigning the global is allowed; the guard stays.
				if out.Err != nil {
					t.Fatal(out.Err)
				}
				return
			}
			if out.Err == nil || !strings.Contains(out.Err.Error(), tt.want) {
				t.Errorf("error %v, want one about %q", out.Err, tt.want)
			}
			if strings.Contains(tt.want, "budget") || strings.Contains(tt.want, "MiB") {
				if !errors.Is(out.Err, jsfunc.ErrInterrupted) {
					t.Errorf("error %v is not ErrInterrupted", out.Err)
				}
			}
		})
	}
	t.Run("a fresh runtime per run", func(t *testing.T) {
		_ = run(t, "globalThis.leak = 1", jsfunc.Limits{})
		if out := run(t, "typeof leak", jsfunc.Limits{}); out.Result != "undefined" {
			t.Errorf("typeof leak = %v", out.Result)
		}
	})
}

func TestCompile(t *testing.T) {
	for _, tt := range []struct{ name, src, want string }{
		{"a syntax error", "function (", "test.js"},
		{"too large", strings.Repeat(" ", jsfunc.MaxSource+1), "bytes"},
		{"sloppy-only code", "with (Math) { max(1, 2) }", "test.js"},
		{"not UTF-8", "'\xff'", "UTF-8"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := jsfunc.Compile("test.js", tt.src); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile: %v, want an error about %s", err, tt.want)
			}
		})
	}
}

// BenchmarkRun is a small script's run, warm (compiled once): a fresh
// runtime, the hardening prelude, the script and the bounded export.
func BenchmarkRun(b *testing.B) {
	p, err := jsfunc.Compile("small.js", "result = {total: input.items.reduce(function (a, x) { return a + x.price }, 0)}")
	if err != nil {
		b.Fatal(err)
	}
	input := map[string]any{"items": []any{map[string]any{"price": 3}, map[string]any{"price": 4}}}
	ctx := context.Background()
	sb := jsfunc.New()
	for b.Loop() {
		if out := sb.Run(ctx, p, map[string]any{"input": input}, jsfunc.Limits{}); out.Err != nil {
			b.Fatal(out.Err)
		}
	}
}

// TestReuse: a kept runtime runs its script's top level once and then
// only the entry function; runtimes are never shared across keys, and one
// that failed is not kept.
func TestReuse(t *testing.T) {
	sb := jsfunc.New()
	p, err := jsfunc.Compile("count.js", "var runs = 0; globalThis.secret = input; function count(e) { runs++; return {runs: runs, seen: typeof other} }")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	do := func(key, input string) jsfunc.Outcome {
		return sb.Do(ctx, jsfunc.Request{Program: p, Globals: map[string]any{"input": input, "event": map[string]any{}}, Entry: "count", Arg: "event", ReuseKey: key})
	}
	for i, want := range []string{"map[runs:1 seen:undefined]", "map[runs:2 seen:undefined]", "map[runs:3 seen:undefined]"} {
		if out := do("acme/count/v1", "a"); out.Err != nil || fmt.Sprint(out.Result) != want {
			t.Errorf("run %d: %v, %v; want %s", i+1, out.Result, out.Err, want)
		}
	}
	if out := do("globex/count/v1", "b"); fmt.Sprint(out.Result) != "map[runs:1 seen:undefined]" {
		t.Errorf("another key shares the runtime: %v", out.Result)
	}
	if out := do("", "c"); fmt.Sprint(out.Result) != "map[runs:1 seen:undefined]" {
		t.Errorf("no key: %v", out.Result)
	}
	bad, _ := jsfunc.Compile("bad.js", "var n = 0; function bad(e) { n++; if (n === 1) { for (;;) {} } return n }")
	run := func() jsfunc.Outcome {
		return sb.Do(ctx, jsfunc.Request{Program: bad, Entry: "bad", Arg: "event", ReuseKey: "acme/bad/v1", Limits: jsfunc.Limits{Timeout: 50 * time.Millisecond}})
	}
	if out := run(); out.Err == nil {
		t.Fatal("the loop was not interrupted")
	}
	// The interrupted runtime was not kept: n starts over in a fresh one,
	// and the loop runs again (a kept one would answer 2).
	if out := run(); out.Err == nil {
		t.Errorf("the second run answered %v: the interrupted runtime was kept", out.Result)
	}
}

// BenchmarkReuse is a small function's run in a kept runtime: what a
// warm trigger costs.
func BenchmarkReuse(b *testing.B) {
	p, err := jsfunc.Compile("small.js", "function small(e) { return {total: e.items.reduce(function (a, x) { return a + x.price }, 0)} }")
	if err != nil {
		b.Fatal(err)
	}
	sb := jsfunc.New()
	ev := map[string]any{"items": []any{map[string]any{"price": 3}, map[string]any{"price": 4}}}
	ctx := context.Background()
	for b.Loop() {
		if out := sb.Do(ctx, jsfunc.Request{Program: p, Globals: map[string]any{"event": ev}, Entry: "small", Arg: "event", ReuseKey: "acme/small/v1"}); out.Err != nil {
			b.Fatal(out.Err)
		}
	}
}

// TestAfterTheScript: what runs after the script — reading result, the
// export, console.log of a deep value — stays bounded, and a runtime
// whose run was interrupted is not kept for the next.
func TestAfterTheScript(t *testing.T) {
	sb := jsfunc.New()
	ctx := context.Background()
	for _, tt := range []struct{ name, src, want string }{
		{"a getter on result that loops", "result = {get x() { for (;;) {} }}", "budget"},
		{"a proxy on result that loops", "result = new Proxy({}, {ownKeys: function () { for (;;) {} }})", "budget"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := jsfunc.Compile("after.js", tt.src)
			if err != nil {
				t.Fatal(err)
			}
			out := sb.Run(ctx, p, nil, jsfunc.Limits{Timeout: 100 * time.Millisecond})
			if out.Err == nil || !strings.Contains(out.Err.Error(), tt.want) {
				t.Errorf("error %v, want one about %q", out.Err, tt.want)
			}
		})
	}
	t.Run("console.log of a deep value", func(t *testing.T) {
		p, err := jsfunc.Compile("deep.js", "var a = []; for (var i = 0; i < 100000; i++) a = [a]; console.log(a); 1")
		if err != nil {
			t.Fatal(err)
		}
		out := sb.Run(ctx, p, nil, jsfunc.Limits{Timeout: 5 * time.Second})
		if out.Err != nil || len(out.Logs) != 1 || !strings.Contains(out.Logs[0], "[truncated]") {
			t.Errorf("logs %.200q, error %v", out.Logs, out.Err)
		}
	})
}

// TestReusedRuntimeAccessors: a script that leaves an accessor on a
// global it is given, or names its entry with a getter, gets no code run
// outside the guards on the next run.
func TestReusedRuntimeAccessors(t *testing.T) {
	sb := jsfunc.New()
	ctx := context.Background()
	p, err := jsfunc.Compile("trap.js", `Object.defineProperty(globalThis, "result", {get: function () { return 1 }, set: function () { for (;;) {} }, configurable: true});
function trap(e) { return 2 }`)
	if err != nil {
		t.Fatal(err)
	}
	req := jsfunc.Request{Program: p, Entry: "trap", Arg: "event", ReuseKey: "acme/trap/v1", Globals: map[string]any{"event": map[string]any{}},
		Limits: jsfunc.Limits{Timeout: 100 * time.Millisecond}}
	for i := 0; i < 2; i++ {
		done := make(chan jsfunc.Outcome, 1)
		go func() { done <- sb.Do(ctx, req) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("run %d hangs in the global's setter", i+1)
		}
	}
	getter, err := jsfunc.Compile("getter.js", `Object.defineProperty(globalThis, "named", {get: function () { throw new Error("boom") }})`)
	if err != nil {
		t.Fatal(err)
	}
	out := sb.Do(ctx, jsfunc.Request{Program: getter, Entry: "named", Arg: "event"})
	if out.Err == nil || !strings.Contains(out.Err.Error(), "boom") {
		t.Errorf("error %v, want the getter's, not a panic", out.Err)
	}
}
