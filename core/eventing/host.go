package eventing

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/events"
)

// Builtins are the functions a script may call, the reference's names.
var Builtins = []string{"sendEvent", "executeTask", "callTaskChain", "executeTaskChain", "httpFetch"}

// Bounds of one run's builtins.
const (
	maxSends      = 10
	maxChainCalls = 3
	maxFetches    = 10
	// chainWait is the longest executeTask and executeTaskChain wait for
	// the execution they started; past it they answer its status.
	chainWait = 60 * time.Second
	// fetchTimeout and maxFetchBody bound httpFetch.
	fetchTimeout = 15 * time.Second
	maxFetchBody = 1 << 20
	// FunctionSource is the source of the events functions send.
	FunctionSource = "stepwise.functions"
)

// host serves one run's builtins.
type host struct {
	bus      *Bus
	tenant   string
	runID    string
	hop      int
	function string

	mu                    sync.Mutex
	sends, chains, fetchN int
}

// Call implements jsfunc.Host.
func (h *host) Call(ctx context.Context, name string, args []any) (any, error) {
	switch name {
	case "sendEvent":
		return h.sendEvent(ctx, args)
	case "callTaskChain":
		return h.chainCall(ctx, args, false)
	case "executeTaskChain":
		return h.chainCall(ctx, args, true)
	case "executeTask":
		return h.executeTask(ctx, args)
	case "httpFetch":
		return h.httpFetch(ctx, args)
	}
	return nil, fmt.Errorf("%s is not a builtin", name)
}

// take counts one use of a bounded builtin and returns its number.
func (h *host) take(n *int, limit int, what string) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if *n >= limit {
		return 0, fmt.Errorf("%s: at most %d per run", what, limit)
	}
	*n++
	return *n, nil
}

func argString(args []any, i int, name string) (string, error) {
	if i >= len(args) {
		return "", fmt.Errorf("%s: required", name)
	}
	s, ok := args[i].(string)
	if !ok || s == "" {
		return "", fmt.Errorf("%s: want a string", name)
	}
	return s, nil
}

// sendEvent(type, data) appends an event one hop further than the run's;
// its id is the run's and the call's number, so a retried run sends the
// same events, which are not appended twice.
func (h *host) sendEvent(ctx context.Context, args []any) (any, error) {
	typ, err := argString(args, 0, "type")
	if err != nil {
		return nil, err
	}
	if !nameOK(typ) {
		return nil, fmt.Errorf("type: at most %d characters, no #", events.MaxNameLen)
	}
	if h.hop+1 > events.MaxHop {
		return nil, fmt.Errorf("sendEvent: the event would be %d functions deep, more than %d", h.hop+1, events.MaxHop)
	}
	n, err := h.take(&h.sends, maxSends, "sendEvent")
	if err != nil {
		return nil, err
	}
	var data any = map[string]any{}
	if len(args) > 1 && args[1] != nil {
		data = args[1]
	}
	if _, ok := data.(map[string]any); !ok {
		data = map[string]any{"value": data}
	}
	body, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("%s/%d", h.runID, n)
	ev := events.Envelope{ID: id, Tenant: h.tenant, Source: FunctionSource, Type: typ, Subject: h.function, AggregateType: "function",
		Version: 1, Time: h.bus.cfg.Now().UTC(), Data: body, Hop: h.hop + 1}
	if err := h.bus.Append(ctx, ev); err != nil {
		return nil, err
	}
	return map[string]any{"success": true, "event_id": id}, nil
}

// startChain starts a durable execution of a chain for the run and hands
// it to the queue; a retried run finds the one it started.
func (h *host) startChain(ctx context.Context, chainID string, input core.Value) (*core.Execution, error) {
	cfg := h.bus.cfg
	if cfg.Executions == nil || cfg.Chains == nil {
		return nil, core.Errorf(core.EUNAVAILABLE, "chains cannot be started here")
	}
	chain, err := cfg.Chains(ctx, h.tenant, chainID)
	if err != nil {
		return nil, err
	}
	return h.start(ctx, chain, input)
}

func (h *host) start(ctx context.Context, chain *core.Chain, input core.Value) (*core.Execution, error) {
	cfg := h.bus.cfg
	if h.hop+1 > events.MaxHop {
		return nil, fmt.Errorf("the chain would run %d functions deep, more than %d", h.hop+1, events.MaxHop)
	}
	n, err := h.take(&h.chains, maxChainCalls, "chain calls")
	if err != nil {
		return nil, err
	}
	id := executionID(h.runID, n)
	ex, err := cfg.Executions.Start(ctx, core.StartRequest{Tenant: h.tenant, ID: id, Chain: chain, Input: input, EventHop: h.hop + 1})
	if core.ErrorCode(err) == core.ECONFLICT {
		// Started by an earlier try of this run, which may have failed to
		// hand it on: a queued one is handed on again (a second message is
		// dropped as stale).
		ex, err = cfg.Executions.Execution(ctx, h.tenant, id)
		if err == nil && ex.Status == core.StatusQueued {
			err = cfg.Executions.Enqueue(ctx, ex)
		}
		return ex, err
	}
	if err != nil {
		return nil, err
	}
	if err := cfg.Executions.Enqueue(ctx, ex); err != nil {
		return nil, err
	}
	return ex, nil
}

// wait polls the execution until it ends or waits, or chainWait passes.
func (h *host) wait(ctx context.Context, ex *core.Execution) (*core.Execution, error) {
	ctx, cancel := context.WithTimeout(ctx, chainWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		cur, err := h.bus.cfg.Executions.Execution(ctx, h.tenant, ex.ID)
		if err != nil {
			return nil, err
		}
		if cur.Status.Final() || cur.Status == core.StatusWaiting {
			return cur, nil
		}
		select {
		case <-ctx.Done():
			return cur, nil
		case <-tick.C:
		}
	}
}

func inputValue(args []any, i int) core.Value {
	if i >= len(args) || args[i] == nil {
		return core.Value{Type: core.TypeJSON, Data: map[string]any{}}
	}
	if s, ok := args[i].(string); ok {
		return core.String(s)
	}
	return core.Value{Type: core.TypeJSON, Data: args[i]}
}

// chainCall is callTaskChain(chainID, input), which starts a durable
// execution and answers its id, and executeTaskChain(chainID, input),
// which also waits for its end.
func (h *host) chainCall(ctx context.Context, args []any, wait bool) (any, error) {
	chainID, err := argString(args, 0, "chainID")
	if err != nil {
		return nil, err
	}
	ex, err := h.startChain(ctx, chainID, inputValue(args, 1))
	if err != nil {
		return nil, err
	}
	out := map[string]any{"success": true, "chain_id": chainID, "execution_id": ex.ID, "status": string(ex.Status)}
	if !wait {
		return out, nil
	}
	return h.ended(ctx, ex, out)
}

// ended waits for an execution and adds its result to out.
func (h *host) ended(ctx context.Context, ex *core.Execution, out map[string]any) (any, error) {
	ex, err := h.wait(ctx, ex)
	if err != nil {
		return nil, err
	}
	out["status"] = string(ex.Status)
	switch {
	case ex.Status == core.StatusSucceeded:
		out["result"] = ex.Output.Data
		out["response"] = ex.Output.Display()
	case ex.Error != nil:
		out["success"], out["error"] = false, ex.Error.Message
	default:
		out["success"], out["error"] = false, "the execution is "+string(ex.Status)+"; read it with GET /executions/"+ex.ID
	}
	return out, nil
}

// executeTask(prompt, modelName, provider) runs one prompt_to_string task
// as a durable execution and answers the model's text.
func (h *host) executeTask(ctx context.Context, args []any) (any, error) {
	prompt, err := argString(args, 0, "prompt")
	if err != nil {
		return nil, err
	}
	model, _ := argOptional(args, 1)
	provider, _ := argOptional(args, 2)
	chain := &core.Chain{ID: "execute-task", Tasks: []*core.Task{{ID: "task", Handler: "prompt_to_string", PromptTemplate: "{{.input}}",
		ExecuteConfig: &core.ExecuteConfig{Model: model, Provider: provider},
		Transition:    &core.Transition{Branches: []*core.Branch{{Operator: "default", Goto: "end"}}}}}}
	if h.bus.cfg.Executions == nil {
		return nil, core.Errorf(core.EUNAVAILABLE, "tasks cannot run here")
	}
	ex, err := h.start(ctx, chain, core.String(prompt))
	if err != nil {
		return nil, err
	}
	return h.ended(ctx, ex, map[string]any{"success": true, "task_id": ex.ID})
}

func argOptional(args []any, i int) (string, bool) {
	if i >= len(args) {
		return "", false
	}
	s, ok := args[i].(string)
	return s, ok
}

// httpFetch(url | {url, method, headers, body, timeoutMs}) through the
// egress guard: at most 15 s and 1 MiB of answer, no redirects followed.
func (h *host) httpFetch(ctx context.Context, args []any) (any, error) {
	if h.bus.cfg.HTTP == nil {
		return nil, core.Errorf(core.EUNAVAILABLE, "httpFetch is not available here")
	}
	if _, err := h.take(&h.fetchN, maxFetches, "httpFetch"); err != nil {
		return nil, err
	}
	var opts struct {
		URL       string            `json:"url"`
		Method    string            `json:"method"`
		Headers   map[string]string `json:"headers"`
		Body      any               `json:"body"`
		TimeoutMs int64             `json:"timeoutMs"`
	}
	switch a := firstArg(args).(type) {
	case string:
		opts.URL = a
	case map[string]any:
		b, _ := json.Marshal(a)
		if err := json.Unmarshal(b, &opts); err != nil {
			return nil, fmt.Errorf("httpFetch: %v", err)
		}
	default:
		return nil, fmt.Errorf("httpFetch: want a URL or {url, method, headers, body, timeoutMs}")
	}
	if opts.Method == "" {
		opts.Method = http.MethodGet
	}
	timeout := fetchTimeout
	if opts.TimeoutMs > 0 && time.Duration(opts.TimeoutMs)*time.Millisecond < timeout {
		timeout = time.Duration(opts.TimeoutMs) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	switch b := opts.Body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		body = strings.NewReader(string(data))
	}
	req, err := http.NewRequestWithContext(ctx, strings.ToUpper(opts.Method), opts.URL, body)
	if err != nil {
		return map[string]any{"ok": false, "error": err.Error()}, nil
	}
	for k, v := range opts.Headers {
		req.Header.Set(k, v)
	}
	resp, err := h.bus.cfg.HTTP.Do(req)
	if err != nil {
		return map[string]any{"ok": false, "url": opts.URL, "error": err.Error()}, nil
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxFetchBody+1))
	if err != nil {
		return map[string]any{"ok": false, "url": opts.URL, "status": resp.StatusCode, "error": err.Error()}, nil
	}
	text := string(data)
	if len(data) > maxFetchBody {
		text = string(data[:maxFetchBody]) + "[truncated]"
	}
	headers := map[string]any{}
	for k := range resp.Header {
		headers[k] = resp.Header.Get(k)
	}
	return map[string]any{"ok": resp.StatusCode >= 200 && resp.StatusCode < 300, "status": resp.StatusCode, "statusText": resp.Status,
		"url": opts.URL, "headers": headers, "body": text}, nil
}

func firstArg(args []any) any {
	if len(args) == 0 {
		return nil
	}
	return args[0]
}
