package jsfunc_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/jsfunc"
)

// childEnv makes this test binary a child of the pool (TestMain).
const childEnv = "STEPWISE_TEST_JS_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		debug.SetMemoryLimit(256 << 20)
		if err := jsfunc.Serve(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func newPool(t testing.TB) *jsfunc.Pool {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := jsfunc.NewPool(jsfunc.PoolConfig{Command: []string{self}, Size: 2, MaxRSS: 384 << 20, Env: []string{childEnv + "=1"}})
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// recorder is a host that answers every builtin with its arguments.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) Call(_ context.Context, name string, args []any) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, name)
	if name == "fail" {
		return nil, errors.New("no such thing")
	}
	return map[string]any{"success": true, "args": args}, nil
}

func TestPool(t *testing.T) {
	p := newPool(t)
	ctx := context.Background()
	t.Run("a loop of quick builtin calls", func(t *testing.T) {
		out := p.Run(ctx, jsfunc.ChildRequest{Name: "spin", Source: "for (;;) { fail() }", Builtins: []string{"fail"}}, &recorder{})
		if out.Err == nil || !strings.Contains(out.Err.Error(), "builtin calls") {
			t.Errorf("error %v, want the builtin calls bounded", out.Err)
		}
	})
	t.Run("a function with builtins", func(t *testing.T) {
		host := &recorder{}
		out := p.Run(ctx, jsfunc.ChildRequest{Name: "onEvent", Source: `function onEvent(e) { var r = sendEvent("seen", {id: e.id}); var f = fail(); console.log(f.error); return {sent: r.args[1].id} }`,
			Globals: map[string]any{"event": map[string]any{"id": "e-1"}}, Entry: "onEvent", Arg: "event", Builtins: []string{"sendEvent", "fail"}}, host)
		if out.Err != nil {
			t.Fatal(out.Err)
		}
		if fmt.Sprint(out.Result) != "map[sent:e-1]" || len(out.Logs) != 1 || out.Logs[0] != "no such thing" || len(host.calls) != 2 {
			t.Errorf("result %v, logs %q, calls %v", out.Result, out.Logs, host.calls)
		}
	})
	for _, tt := range []struct {
		name, src string
		limits    jsfunc.Limits
		crash     bool
		want      string
	}{
		{"an endless loop", "for (;;) {}", jsfunc.Limits{Timeout: 100 * time.Millisecond}, false, "budget"},
		{"a terabyte repeat", "'x'.repeat(Math.pow(1024, 4))", jsfunc.Limits{}, false, "RangeError"},
		{"a huge join", "var a = []; a.length = 1e7; a.join('xxxxxxxxxx')", jsfunc.Limits{}, false, "RangeError"},
		{"deep recursion", "function f() { return f() } f()", jsfunc.Limits{}, false, "call stack"},
		{"prototype tampering", "Object.prototype.admin = true", jsfunc.Limits{}, false, "TypeError"},
		{"a string that doubles", "var s = 'x'; for (var i = 0; i < 40; i++) s += s; s.length", jsfunc.Limits{Timeout: 5 * time.Second}, false, ""},
		{"a backtracking regexp, which no interrupt stops", "/^(a+)+\\1$/.test('a'.repeat(30) + 'b')", jsfunc.Limits{Timeout: 100 * time.Millisecond}, true, "budget"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			out := p.Run(ctx, jsfunc.ChildRequest{Name: "abuse.js", Source: tt.src, Limits: tt.limits}, &recorder{})
			if out.Err == nil {
				t.Fatalf("no error after %s; result %v", time.Since(start), out.Result)
			}
			if crashed := errors.Is(out.Err, jsfunc.ErrCrashed); tt.crash && !crashed {
				t.Errorf("error %v, want the child killed", out.Err)
			}
			if tt.want != "" && !strings.Contains(out.Err.Error(), tt.want) {
				t.Errorf("error %v, want one about %q", out.Err, tt.want)
			}
			// The pool goes on: the next run works, on a new child if
			// this one was killed.
			next := p.Run(ctx, jsfunc.ChildRequest{Name: "ok.js", Source: "6 * 7"}, &recorder{})
			if next.Err != nil || next.Result != int64(42) && next.Result != 42.0 {
				t.Errorf("the run after: %v, %v", next.Result, next.Err)
			}
		})
	}
}

// BenchmarkPoolRun is a small function's run in a warm child with a kept
// runtime: the process boundary's cost beside BenchmarkReuse's.
func BenchmarkPoolRun(b *testing.B) {
	p := newPool(b)
	ctx := context.Background()
	req := jsfunc.ChildRequest{Name: "small", Source: "function small(e) { return {total: e.items.reduce(function (a, x) { return a + x.price }, 0)} }",
		Globals: map[string]any{"event": map[string]any{"items": []any{map[string]any{"price": 3}, map[string]any{"price": 4}}}},
		Entry:   "small", Arg: "event", ReuseKey: "acme/small/v1"}
	for b.Loop() {
		if out := p.Run(ctx, req, &recorder{}); out.Err != nil {
			b.Fatal(out.Err)
		}
	}
}
