package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// lockedBuffer is a bytes.Buffer safe for the progress ticker's writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestProgress(t *testing.T) {
	step := &core.Step{Index: 1, TaskID: "ask", Handler: "prompt_to_string", Duration: 1234 * time.Millisecond, Model: "m:1", Transition: "end", Printed: "a print line"}
	events := []core.Event{
		{Kind: core.EventStepStarted, StepIndex: 1, TaskID: "ask", Handler: "prompt_to_string", At: time.Now()},
		{Kind: core.EventDelta, Delta: "hel"},
		{Kind: core.EventDelta, Delta: "lo"},
		{Kind: core.EventStepCommitted, Step: step},
		{Kind: core.EventFinished},
	}
	tests := []struct {
		name       string
		live       bool
		steps      bool
		trace      bool
		want       []string
		wantAbsent []string
	}{
		{"PipedPlain", false, false, false, []string{"a print line\n"}, []string{"\r", "step 1"}},
		{"PipedSteps", false, true, false, []string{"a print line\n  1. ask (prompt_to_string) 1.234s [m:1] → end\n"}, []string{"\r"}},
		{"PipedTrace", false, false, true, []string{`"task_id":"ask"`, `"transition":"end"`}, []string{"\r"}},
		{"TerminalShowsTheRunningStep", true, false, false, []string{"\r\033[K⠋ step 1 · ask (prompt_to_string) · ", "a print line\n"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out lockedBuffer
			p := newProgress(&out, tt.live, tt.steps, tt.trace)
			for _, e := range events {
				p.Observe(e)
			}
			p.stop()
			p.stop() // idempotent
			got := out.String()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("output %q lacks %q", got, w)
				}
			}
			for _, w := range tt.wantAbsent {
				if strings.Contains(got, w) {
					t.Errorf("output %q has %q", got, w)
				}
			}
			if tt.live && !strings.HasSuffix(got, "\r\033[K") && !strings.HasSuffix(got, "a print line\n") {
				t.Errorf("the live line was not cleared at the end: %q", got)
			}
			after := out.String()
			time.Sleep(150 * time.Millisecond)
			if out.String() != after {
				t.Errorf("progress wrote after stop")
			}
		})
	}
}

func TestStepLine(t *testing.T) {
	tests := []struct {
		name string
		step core.Step
		want string
	}{
		{"Success", core.Step{Index: 3, TaskID: "a", Handler: "noop", Duration: 2 * time.Millisecond, Transition: "b"}, "  3. a (noop) 2ms → b"},
		{"Retry", core.Step{Index: 1, TaskID: "a", Handler: "raw", Attempt: 1, Error: &core.ExecError{Message: "busy"}, Transition: "a"}, "  1. a (raw) 0s ✗ busy → retry"},
		{"SecondAttemptToFallback", core.Step{Index: 2, TaskID: "a", Handler: "raw", Attempt: 2, Error: &core.ExecError{Message: "busy"}, Transition: "fallback"}, "  2. a (raw) 0s attempt 2 ✗ busy → fallback"},
		{"FinalFailure", core.Step{Index: 2, TaskID: "a", Handler: "raw", Error: &core.ExecError{Message: "boom"}}, "  2. a (raw) 0s ✗ boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stepLine(&tt.step); got != tt.want {
				t.Errorf("stepLine = %q, want %q", got, tt.want)
			}
		})
	}
}
