package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// progress shows an execution as it runs. On a terminal it keeps one live
// status line (the step running, its elapsed time); with -steps it prints
// one line per committed step, with -trace the step record as JSON, and it
// always shows what tasks print. Piped, it prints only those lines.
type progress struct {
	w     io.Writer
	live  bool
	steps bool
	trace bool

	mu      sync.Mutex
	status  string
	since   time.Time
	deltas  int
	shown   bool
	frame   int
	stopped bool
	quit    chan struct{}
	done    chan struct{}
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

func newProgress(w io.Writer, live, steps, trace bool) *progress {
	p := &progress{w: w, live: live, steps: steps, trace: trace, quit: make(chan struct{}), done: make(chan struct{})}
	if !live {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
				p.mu.Lock()
				p.frame++
				p.redraw()
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// Observe implements core.Observer.
func (p *progress) Observe(e core.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	switch e.Kind {
	case core.EventStepStarted:
		p.status = fmt.Sprintf("step %d · %s (%s)", e.StepIndex, e.TaskID, e.Handler)
		if e.Attempt > 1 {
			p.status += fmt.Sprintf(" attempt %d", e.Attempt)
		}
		p.since, p.deltas = e.At, 0
		p.redraw()
	case core.EventDelta:
		p.deltas++
	case core.EventStepCommitted:
		p.clear()
		p.report(e.Step)
		// Between steps the line says what happens next, not the step that
		// is over: a retry may wait for its backoff.
		p.status, p.deltas = "", 0
		if st := e.Step; st.Error != nil && st.Transition == st.TaskID {
			p.status, p.since = fmt.Sprintf("waiting to retry %s", st.TaskID), time.Now()
		}
		p.redraw()
	case core.EventFinished:
		p.status = ""
		p.clear()
	}
}

// report prints what a committed step asks for.
func (p *progress) report(st *core.Step) {
	if st.Printed != "" {
		fmt.Fprintln(p.w, st.Printed)
	}
	if p.steps {
		fmt.Fprintln(p.w, stepLine(st))
	}
	if p.trace {
		b, err := json.Marshal(st)
		if err == nil {
			fmt.Fprintf(p.w, "%s\n", b)
		}
	}
}

// stepLine formats a step as "index. task (handler) duration -> next".
func stepLine(st *core.Step) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%3d. %s (%s) %s", st.Index, st.TaskID, st.Handler, st.Duration.Round(time.Millisecond))
	if st.Attempt > 1 {
		fmt.Fprintf(&sb, " attempt %d", st.Attempt)
	}
	if st.Model != "" {
		fmt.Fprintf(&sb, " [%s]", st.Model)
	}
	if st.Error != nil {
		fmt.Fprintf(&sb, " ✗ %s", st.Error.Message)
	}
	switch {
	case st.Error != nil && st.Transition == st.TaskID:
		sb.WriteString(" → retry")
	case st.Transition != "":
		fmt.Fprintf(&sb, " → %s", st.Transition)
	}
	return sb.String()
}

// redraw rewrites the live status line; callers hold p.mu.
func (p *progress) redraw() {
	if !p.live || p.status == "" {
		return
	}
	line := fmt.Sprintf("%s %s · %.1fs", spinner[p.frame%len(spinner)], p.status, time.Since(p.since).Seconds())
	if p.deltas > 0 {
		line += fmt.Sprintf(" · streaming (%d chunks)", p.deltas)
	}
	fmt.Fprintf(p.w, "\r\033[K%s", line)
	p.shown = true
}

// clear erases the live status line; callers hold p.mu.
func (p *progress) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}

// stop ends the live line; it is safe to call more than once.
func (p *progress) stop() {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		p.clear()
		if p.live {
			close(p.quit)
		}
	}
	p.mu.Unlock()
	<-p.done
}
