package core

import "time"

// EventKind says what an observer event reports.
type EventKind string

// Observer event kinds.
const (
	// EventStepStarted: a step is about to run Task (Step is nil).
	EventStepStarted EventKind = "step_started"
	// EventDelta: a piece of text (Delta) or of a tool call (ToolCall) a
	// model streams during the step. Deltas are not checkpoints: an
	// interrupted step runs again.
	EventDelta EventKind = "delta"
	// EventStepCommitted: the step record is durable (Step is set).
	EventStepCommitted EventKind = "step_committed"
	// EventFinished: the execution reached a final or waiting state
	// (Execution is set).
	EventFinished EventKind = "finished"
)

// Event is one report from the engine while it runs an execution.
type Event struct {
	Kind        EventKind
	ExecutionID string
	// StepIndex is the index of the step the event belongs to.
	StepIndex int
	TaskID    string
	Handler   string
	Attempt   int
	// Delta is the streamed text (EventDelta).
	Delta string
	// ToolCall is the streamed piece of a tool call (EventDelta), nil for
	// text.
	ToolCall *ToolCallDelta
	// Step is the committed record (EventStepCommitted).
	Step *Step
	// Execution is the final state (EventFinished).
	Execution *Execution
	At        time.Time
}

// Observer receives the engine's events, synchronously and in order, on
// the goroutine that runs the execution; it must not block for long.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Observe calls f.
func (f ObserverFunc) Observe(e Event) { f(e) }
