package core

import (
	"encoding/json"
	"fmt"
	"time"
)

// Chain is a task chain: a state machine whose first task is the entry.
type Chain struct {
	ID          string `json:"id"`
	Description string `json:"description,omitempty"`
	// Debug asks for full inputs and outputs in step records; stepwise
	// always records them, so the field is kept only for compatibility.
	Debug bool `json:"debug,omitempty"`
	// TokenLimit caps the estimated tokens of any one prompt or chat
	// history (0 = unlimited).
	TokenLimit int `json:"token_limit,omitempty"`
	// MaxSteps bounds the steps of one execution (0 = DefaultMaxSteps).
	MaxSteps int `json:"max_steps,omitempty"`
	// MaxTokensTotal bounds the model tokens (in + out) of one execution
	// (0 = unlimited): an agent loop that talks too long fails instead of
	// running up a bill.
	MaxTokensTotal int `json:"max_tokens_total,omitempty"`
	// MaxDuration bounds the wall time of one execution from its creation,
	// time spent waiting included (0 = unlimited).
	MaxDuration Duration `json:"max_duration,omitempty"`
	// RoutingPolicy orders the backends that can serve a model for every
	// model call of the chain (one of RoutingPolicies; "" = the server's
	// default). A request may override it.
	RoutingPolicy string  `json:"routing_policy,omitempty"`
	Tasks         []*Task `json:"tasks"`
}

// DefaultMaxSteps bounds an execution whose chain sets no max_steps.
const DefaultMaxSteps = 100

// Task is one state of a chain.
type Task struct {
	ID                string          `json:"id"`
	Description       string          `json:"description,omitempty"`
	Handler           string          `json:"handler"`
	SystemInstruction string          `json:"system_instruction,omitempty"`
	PromptTemplate    string          `json:"prompt_template,omitempty"`
	InputVar          string          `json:"input_var,omitempty"`
	ValidConditions   map[string]bool `json:"valid_conditions,omitempty"`
	ExecuteConfig     *ExecuteConfig  `json:"execute_config,omitempty"`
	Hook              *HookSpec       `json:"hook,omitempty"`
	OutputTemplate    string          `json:"output_template,omitempty"`
	Print             string          `json:"print,omitempty"`
	// Timeout bounds each attempt of the task.
	Timeout Duration `json:"timeout,omitempty"`
	// RetryOnFailure is how many more attempts a failed task gets.
	RetryOnFailure int `json:"retry_on_failure,omitempty"`
	// RetryBackoff is the wait before the first retry; it doubles for each
	// further retry, capped at MaxRetryBackoff (0 = DefaultRetryBackoff).
	RetryBackoff Duration    `json:"retry_backoff,omitempty"`
	Transition   *Transition `json:"transition,omitempty"`
}

// Retry backoff bounds.
const (
	DefaultRetryBackoff = 250 * time.Millisecond
	MaxRetryBackoff     = 30 * time.Second
)

// ExecuteConfig chooses the model and the tools of an LLM task.
type ExecuteConfig struct {
	Model       string   `json:"model,omitempty"`
	Models      []string `json:"models,omitempty"`
	Provider    string   `json:"provider,omitempty"`
	Providers   []string `json:"providers,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
	TopP        *float64 `json:"top_p,omitempty"`
	MaxTokens   int      `json:"max_tokens,omitempty"`
	Stop        []string `json:"stop,omitempty"`
	// Hooks name the hooks whose tools a chat_completion task offers.
	Hooks []string `json:"hooks,omitempty"`
	// HideTools removes tools by name from what the model is offered.
	HideTools []string `json:"hide_tools,omitempty"`
	// PassClientsTools offers the tools of an openai_chat request.
	PassClientsTools bool `json:"pass_clients_tools,omitempty"`
}

// HookSpec names the hook a hook task calls.
type HookSpec struct {
	Name     string            `json:"name"`
	ToolName string            `json:"tool_name,omitempty"`
	Args     map[string]string `json:"args,omitempty"`
}

// Transition chooses the next task from a task's result.
type Transition struct {
	// OnFailure is the task that runs, with the error text as its input,
	// when the task fails after its retries.
	OnFailure string    `json:"on_failure,omitempty"`
	Branches  []*Branch `json:"branches,omitempty"`
}

// Branch is one possible transition. The first non-default branch whose
// operator matches wins; otherwise the first default branch.
type Branch struct {
	Operator string   `json:"operator"`
	When     string   `json:"when,omitempty"`
	Goto     string   `json:"goto"`
	Compose  *Compose `json:"compose,omitempty"`
}

// Compose merges the task's output with a variable when its branch is taken.
type Compose struct {
	WithVar  string `json:"with_var"`
	Strategy string `json:"strategy,omitempty"`
}

// End is the goto target that finishes an execution ("" does too).
const End = "end"

// Task returns the task with the given id, or nil.
func (c *Chain) Task(id string) *Task {
	for _, t := range c.Tasks {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// StepLimit returns the chain's step bound.
func (c *Chain) StepLimit() int {
	if c.MaxSteps > 0 {
		return c.MaxSteps
	}
	return DefaultMaxSteps
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"30s\"")
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("malformed duration %q (want a Go duration such as \"30s\" or \"1m30s\")", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return v, nil
}
