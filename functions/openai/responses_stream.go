package openai

import (
	"net/http"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// responseEvents writes a Responses API stream: the documented events,
// each with the event name as its SSE event and a sequence_number rising
// by one from 0. Like chunks it sends nothing until the first piece of
// the answer, so that a request failing before it gets a status of its
// own. It is an Observer of the engine (a stored response) and takes the
// router's deltas (a response that is not stored).
type responseEvents struct {
	w    http.ResponseWriter
	wait time.Duration
	base responseObject

	mu     sync.Mutex
	stream *webapi.Stream
	err    error
	seq    int
	items  []outputItem // the output so far, open items in progress
	text   int          // index in items of the open message, -1 if none
	calls  map[int]int  // tool call index -> index in items
	broken bool         // a step failed after the stream began
}

func newResponseEvents(w http.ResponseWriter, wait time.Duration, base responseObject) *responseEvents {
	return &responseEvents{w: w, wait: wait, base: base, text: -1, calls: map[int]int{}}
}

func (s *responseEvents) started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stream != nil
}

// emit writes one event. s.mu must be held.
func (s *responseEvents) emit(typ string, fields map[string]any) {
	if s.err != nil {
		return
	}
	fields["type"] = typ
	fields["sequence_number"] = s.seq
	s.seq++
	if err := s.stream.Event(0, typ, fields); err != nil {
		s.err = err
	}
}

// begin starts the stream: response.created and response.in_progress.
// s.mu must be held.
func (s *responseEvents) begin() bool {
	if s.err != nil {
		return false
	}
	if s.stream != nil {
		return true
	}
	st, err := webapi.StartStream(s.w, s.wait)
	if err != nil {
		s.err = err
		return false
	}
	s.stream = st
	s.emit("response.created", map[string]any{"response": s.base})
	s.emit("response.in_progress", map[string]any{"response": s.base})
	return true
}

// Observe implements core.Observer: a stored response's model deltas, and
// a step that fails after its answer began.
func (s *responseEvents) Observe(e core.Event) {
	switch e.Kind {
	case core.EventDelta:
		s.delta(core.Delta{Text: e.Delta, ToolCall: e.ToolCall})
	case core.EventStepCommitted:
		if e.Step != nil && e.Step.Error != nil && s.started() {
			s.mu.Lock()
			s.broken = true
			s.mu.Unlock()
		}
	}
}

// delta passes one piece of the answer on.
func (s *responseEvents) delta(d core.Delta) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.Text == "" && d.ToolCall == nil {
		return
	}
	if !s.begin() {
		return
	}
	if d.Text != "" {
		if s.text < 0 {
			s.text = len(s.items)
			item := messageItem(s.base.ID, "", "in_progress")
			s.items = append(s.items, item)
			s.emit("response.output_item.added", map[string]any{"output_index": s.text, "item": item})
			s.emit("response.content_part.added", map[string]any{"item_id": item.ID, "output_index": s.text, "content_index": 0,
				"part": outputTextP{Type: "output_text", Text: "", Annotations: []any{}}})
		}
		item := &s.items[s.text]
		if len(item.Content) == 0 {
			item.Content = []outputTextP{{Type: "output_text", Annotations: []any{}}}
		}
		item.Content[0].Text += d.Text
		s.emit("response.output_text.delta", map[string]any{"item_id": item.ID, "output_index": s.text, "content_index": 0, "delta": d.Text, "logprobs": []any{}})
	}
	if tc := d.ToolCall; tc != nil {
		at, ok := s.calls[tc.Index]
		if !ok {
			s.closeText()
			at = len(s.items)
			s.calls[tc.Index] = at
			item := callItem(tc.ID, tc.Name, "", "in_progress")
			s.items = append(s.items, item)
			s.emit("response.output_item.added", map[string]any{"output_index": at, "item": item})
		}
		if tc.Arguments != "" {
			s.items[at].Arguments += tc.Arguments
			s.emit("response.function_call_arguments.delta", map[string]any{"item_id": s.items[at].ID, "output_index": at, "delta": tc.Arguments})
		}
	}
}

// closeText ends the open message item's text. s.mu must be held.
func (s *responseEvents) closeText() {
	if s.text < 0 {
		return
	}
	at := s.text
	s.text = -1
	item := &s.items[at]
	item.Status = "completed"
	part := item.Content[0]
	s.emit("response.output_text.done", map[string]any{"item_id": item.ID, "output_index": at, "content_index": 0, "text": part.Text, "logprobs": []any{}})
	s.emit("response.content_part.done", map[string]any{"item_id": item.ID, "output_index": at, "content_index": 0, "part": part})
	s.emit("response.output_item.done", map[string]any{"output_index": at, "item": *item})
}

// complete ends the stream of a whole response: the items it streamed are
// closed, the items of the answer it did not stream are sent whole, and
// response.completed carries the response.
func (s *responseEvents) complete(view responseObject) {
	s.mu.Lock()
	broken := s.broken
	s.mu.Unlock()
	if broken {
		s.fail(view, webapi.ErrorObject{Message: "the answer was cut: the model call failed after it began", Type: "api_error", Code: core.EUNAVAILABLE})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.begin() {
		return
	}
	s.closeText()
	for i := range s.items {
		if it := &s.items[i]; it.Type == "function_call" && it.Status != "completed" {
			it.Status = "completed"
			s.emit("response.function_call_arguments.done", map[string]any{"item_id": it.ID, "output_index": i, "arguments": it.Arguments, "name": it.Name})
			s.emit("response.output_item.done", map[string]any{"output_index": i, "item": *it})
		}
	}
	// What the answer holds beyond what streamed (an answer that came
	// whole) is sent as whole items.
	for i := len(s.items); i < len(view.Output); i++ {
		item := view.Output[i]
		s.emit("response.output_item.added", map[string]any{"output_index": i, "item": item})
		if item.Type == "message" && len(item.Content) > 0 {
			part := item.Content[0]
			s.emit("response.content_part.added", map[string]any{"item_id": item.ID, "output_index": i, "content_index": 0, "part": outputTextP{Type: "output_text", Annotations: []any{}}})
			s.emit("response.output_text.delta", map[string]any{"item_id": item.ID, "output_index": i, "content_index": 0, "delta": part.Text, "logprobs": []any{}})
			s.emit("response.output_text.done", map[string]any{"item_id": item.ID, "output_index": i, "content_index": 0, "text": part.Text, "logprobs": []any{}})
			s.emit("response.content_part.done", map[string]any{"item_id": item.ID, "output_index": i, "content_index": 0, "part": part})
		}
		if item.Type == "function_call" {
			s.emit("response.function_call_arguments.done", map[string]any{"item_id": item.ID, "output_index": i, "arguments": item.Arguments, "name": item.Name})
		}
		s.emit("response.output_item.done", map[string]any{"output_index": i, "item": item})
	}
	s.emit("response.completed", map[string]any{"response": view})
}

// fail ends a stream a failure cut short: response.failed, with the
// response and its error, then an error event. Never response.completed.
func (s *responseEvents) fail(view responseObject, obj webapi.ErrorObject) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.begin() {
		return
	}
	view.Status = "failed"
	view.Error = &responseError{Code: obj.Code, Message: obj.Message}
	view.Output = append([]outputItem{}, s.items...)
	s.emit("response.failed", map[string]any{"response": view})
	s.emit("error", map[string]any{"code": obj.Code, "message": obj.Message, "param": obj.Param})
}
