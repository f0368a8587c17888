// Package jsfunc runs user JavaScript in goja with the in-process limits
// of DESIGN.md "User JavaScript is isolated": a fresh runtime per run,
// strict mode, frozen built-ins, a bounded call stack, an interrupt at the
// deadline, a heap watchdog, size caps on the built-ins that amplify
// memory, and a bounded walk over what leaves the script. These bound
// well-meant and most hostile code; they are not a boundary between
// tenants (a native built-in can still run past an interrupt), which is
// why the server runs other users' functions in a child process.
package jsfunc

import (
	"context"
	"errors"
	"fmt"
	"runtime/metrics"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/dop251/goja"
)

// Limits bound one run. Zero fields take the defaults.
type Limits struct {
	// Timeout is the run's wall-clock budget (default 1s, at most
	// MaxTimeout).
	Timeout time.Duration
	// MaxHeapGrowth interrupts a run whose heap grows past it (default
	// 128 MiB).
	MaxHeapGrowth uint64
	// MaxCallStack is the deepest JS call stack (default 512).
	MaxCallStack int
}

// Bounds of sources, runs and their results.
const (
	DefaultTimeout       = time.Second
	MaxTimeout           = 10 * time.Second
	MaxSource            = 64 << 10
	defaultHeapGrowth    = 128 << 20
	defaultCallStack     = 512
	maxCompile           = 500 * time.Millisecond
	maxResultBytes       = 256 << 10
	maxResultNodes       = 10_000
	maxResultDepth       = 64
	maxLogLines          = 200
	maxLogBytes          = 64 << 10
	maxBuiltLength       = 1 << 24 // characters a repeat or pad may make
	maxArrayLength       = 1 << 20 // elements Array(n), fill and join may touch
	watchdogInterval     = 5 * time.Millisecond
	resultTruncatedLabel = "[truncated]"
)

func (l Limits) withDefaults() Limits {
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	l.Timeout = min(l.Timeout, MaxTimeout)
	if l.MaxHeapGrowth == 0 {
		l.MaxHeapGrowth = defaultHeapGrowth
	}
	if l.MaxCallStack <= 0 {
		l.MaxCallStack = defaultCallStack
	}
	return l
}

// Program is a compiled script.
type Program struct {
	name string
	prog *goja.Program
}

// Compile checks and compiles a script: at most MaxSource bytes, valid
// strict-mode JavaScript, compiled within 500 ms.
func Compile(name, src string) (*Program, error) {
	if len(src) > MaxSource {
		return nil, fmt.Errorf("%s: the script is %d bytes, more than %d", name, len(src), MaxSource)
	}
	if !utf8.ValidString(src) {
		return nil, fmt.Errorf("%s: the script is not valid UTF-8", name)
	}
	start := time.Now()
	// The directive goes on the script's first line, so that line numbers
	// in errors stay the user's.
	prog, err := goja.Compile(name, `"use strict";`+src, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if d := time.Since(start); d > maxCompile {
		return nil, fmt.Errorf("%s: the script took %s to compile, more than %s", name, d.Round(time.Millisecond), maxCompile)
	}
	return &Program{name: name, prog: prog}, nil
}

// Outcome is one run's result.
type Outcome struct {
	// Result is the global result if the script set one, else the value
	// of its last statement, as JSON-like Go values.
	Result any
	// Logs are console.log's lines.
	Logs []string
	// Err is the script's error (a thrown exception, an interrupt at
	// the deadline or the heap limit).
	Err      error
	Started  time.Time
	Duration time.Duration
}

// ErrInterrupted is the error of a run stopped at its deadline or heap
// limit.
var ErrInterrupted = errors.New("interrupted")

// ErrCrashed is the error of a run whose process died or was killed (a
// child process past its memory or time limit).
var ErrCrashed = errors.New("the function's process died")

// Sandbox runs programs; it holds what every run shares, compiled once,
// and the runtimes kept for reuse.
type Sandbox struct {
	// prelude is compiled on first use: a process that never runs a
	// script (most `stepwise run`s) does not pay for it.
	preludeOnce sync.Once
	prelude     *goja.Program

	mu    sync.Mutex
	reuse map[string]*runtime
}

// maxReused bounds the runtimes a Sandbox keeps.
const maxReused = 64

// New returns a Sandbox.
func New() *Sandbox {
	return &Sandbox{reuse: map[string]*runtime{}}
}

// hardeningProgram is the compiled hardening prelude.
func (s *Sandbox) hardeningProgram() *goja.Program {
	s.preludeOnce.Do(func() {
		s.prelude = goja.MustCompile("hardening.js", fmt.Sprintf(hardening, maxBuiltLength, maxArrayLength), true)
	})
	return s.prelude
}

// Host serves a script's builtins (sendEvent, httpFetch, ...): the
// script calls name with JSON-like arguments and gets a JSON-like result.
// Time spent in the host does not count against the script's budget; ctx
// bounds it.
type Host interface {
	Call(ctx context.Context, name string, args []any) (any, error)
}

// Request is one run.
type Request struct {
	Program *Program
	// Globals are defined before the script runs (JSON-like values).
	Globals map[string]any
	// Entry, if the script defines a global function of that name, is
	// called after the script with the global Arg; its return value is
	// the result (the reference's convention: a function named like the
	// stored one is called with the event).
	Entry, Arg string
	// Builtins are the names the script may call on Host.
	Builtins []string
	Host     Host
	Limits   Limits
	// ReuseKey, when set with an Entry the script defines, keeps the
	// runtime for the next request of the same key: the script's
	// top-level code runs once, when the runtime is made, and each later
	// request only calls Entry. It must name one tenant's one version of
	// one function: a runtime is never shared beyond it.
	ReuseKey string
}

// Run runs p once in a fresh runtime, with globals (JSON-like values)
// defined before it.
func (s *Sandbox) Run(ctx context.Context, p *Program, globals map[string]any, limits Limits) Outcome {
	return s.Do(ctx, Request{Program: p, Globals: globals, Limits: limits})
}

// Do runs a request, in a fresh runtime or in the one kept for its
// ReuseKey.
func (s *Sandbox) Do(ctx context.Context, req Request) Outcome {
	limits := req.Limits.withDefaults()
	out := Outcome{Started: time.Now()}
	key := ""
	if req.ReuseKey != "" && req.Entry != "" {
		key = fmt.Sprintf("%s\x00%d\x00%s", req.ReuseKey, limits.MaxCallStack, strings.Join(req.Builtins, ","))
	}
	rt := s.take(key)
	fresh := rt == nil
	if fresh {
		var err error
		if rt, err = s.newRuntime(limits.MaxCallStack, req.Builtins); err != nil {
			out.Err = err
			return out
		}
	}
	vm := rt.vm
	rt.begin(ctx, req.Host, newBudget(vm, limits.Timeout))
	stopCtx := context.AfterFunc(ctx, func() {
		vm.Interrupt(fmt.Errorf("%w: %v", ErrInterrupted, context.Cause(ctx)))
	})
	stopWatch := watchHeap(vm, limits.MaxHeapGrowth)
	// quiet stops every source of interrupts and reports whether none
	// fired: only then may the runtime serve another run, since a late
	// interrupt would land in that run.
	quiet := func() bool {
		ctxCalm := stopCtx()
		heapCalm := stopWatch()
		budgetCalm := rt.budget.stop()
		return ctxCalm && heapCalm && budgetCalm
	}
	defer quiet()

	rt.budget.start()
	var v goja.Value
	// Everything from here on may run the script's own code (a global's
	// accessor, a getter named like the entry): all under the guards.
	err := catchInterrupt(func() {
		if err := rt.setGlobals(req.Globals); err != nil {
			panic(err)
		}
	})
	if err == nil && fresh {
		v, err = runSafely(vm, func() (goja.Value, error) { return vm.RunProgram(req.Program.prog) })
	}
	entry := false
	if err == nil && req.Entry != "" {
		var fn goja.Callable
		err = catchInterrupt(func() { fn, entry = goja.AssertFunction(vm.Get(req.Entry)) })
		if err == nil && entry {
			v, err = runSafely(vm, func() (goja.Value, error) { return fn(goja.Undefined(), vm.Get(req.Arg)) })
		}
	}
	if err == nil {
		// Reading result and exporting it may run the script's getters
		// and proxies: still under the budget and the watchdog.
		err = catchInterrupt(func() {
			if r := vm.Get("result"); r != nil && !goja.IsUndefined(r) && !goja.IsNull(r) {
				v = r
			}
			out.Result = export(vm, v)
		})
	}
	calm := quiet()
	out.Duration = time.Since(out.Started)
	out.Logs = rt.logs.lines
	if err != nil {
		out.Err = scriptError(err)
		out.Result = nil
		return out
	}
	if key != "" && entry && calm {
		s.keep(key, rt)
	}
	return out
}

// catchInterrupt runs fn, turning an interrupt or a Go panic in the
// script's code it calls (a getter) into an error.
func catchInterrupt(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = e
				return
			}
			err = fmt.Errorf("the script failed: %v", r)
		}
	}()
	fn()
	return nil
}

// take removes and returns the runtime kept for key, nil if none.
func (s *Sandbox) take(key string) *runtime {
	if key == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.reuse[key]
	delete(s.reuse, key)
	return rt
}

// keep puts a runtime that ended well back for its key.
func (s *Sandbox) keep(key string, rt *runtime) {
	rt.vm.ClearInterrupt()
	rt.host, rt.ctx = nil, nil
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reuse) >= maxReused {
		for k := range s.reuse {
			delete(s.reuse, k)
			break
		}
	}
	s.reuse[key] = rt
}

// budget interrupts the runtime once the script has run for its timeout,
// not counting the time spent in the host's builtins.
type budget struct {
	vm      *goja.Runtime
	timeout time.Duration
	mu      sync.Mutex
	left    time.Duration
	since   time.Time
	timer   *time.Timer
	fired   bool
}

func newBudget(vm *goja.Runtime, timeout time.Duration) *budget {
	return &budget{vm: vm, timeout: timeout, left: timeout}
}

// start (re)starts the clock with what is left.
func (b *budget) start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.since = time.Now()
	b.timer = time.AfterFunc(b.left, func() {
		b.vm.Interrupt(fmt.Errorf("%w: ran past its %s budget", ErrInterrupted, b.timeout))
	})
}

// stop pauses the clock and reports whether it had not run out.
func (b *budget) stop() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.timer == nil {
		return !b.fired
	}
	if !b.timer.Stop() {
		b.fired = true
	}
	b.timer = nil
	b.left -= time.Since(b.since)
	return !b.fired
}

// runSafely runs the program, turning a Go panic escaping a built-in into
// an error.
func runSafely(vm *goja.Runtime, run func() (goja.Value, error)) (v goja.Value, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the script crashed a built-in: %v", r)
		}
	}()
	return run()
}

// scriptError is a run's error as the user should read it.
func scriptError(err error) error {
	var ie *goja.InterruptedError
	if errors.As(err, &ie) {
		if e, ok := ie.Value().(error); ok {
			return e
		}
		return ErrInterrupted
	}
	var so *goja.StackOverflowError
	if errors.As(err, &so) {
		return errors.New("the call stack is too deep")
	}
	var ex *goja.Exception
	if errors.As(err, &ex) {
		return errors.New(ex.Error())
	}
	return err
}

// watchHeap interrupts vm when the process's heap grows by more than
// limit while it runs: a backstop for memory built up in JS.
func watchHeap(vm *goja.Runtime, limit uint64) (stop func() (calm bool)) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			return sample[0].Value.Uint64()
		}
		return 0
	}
	base := read()
	done := make(chan struct{})
	exited := make(chan bool, 1) // whether it interrupted
	var once sync.Once
	go func() {
		t := time.NewTicker(watchdogInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				exited <- false
				return
			case <-t.C:
				if now := read(); now > base+limit {
					vm.Interrupt(fmt.Errorf("%w: the script used more than %d MiB", ErrInterrupted, limit>>20))
					exited <- true
					return
				}
			}
		}
	}()
	var fired bool
	return func() bool {
		once.Do(func() {
			close(done)
			fired = <-exited
		})
		return !fired
	}
}

// logSink is console.log's capped output.
type logSink struct {
	lines []string
	bytes int
}

func (l *logSink) add(s string) {
	switch {
	case len(l.lines) >= maxLogLines || l.bytes >= maxLogBytes:
		return
	case l.bytes+len(s) > maxLogBytes:
		s = s[:maxLogBytes-l.bytes] + " " + resultTruncatedLabel
	}
	l.bytes += len(s)
	l.lines = append(l.lines, strings.ToValidUTF8(s, "\uFFFD"))
}
