package openai

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// chat is the plain routed proxy: the request goes to a backend serving
// its model, chosen by the router, and the answer comes back as the
// backend streams it. A backend that fails before the first byte (down,
// 429, 5xx) gives way to the next; after it, the stream ends with an
// error.
func (h *Handler) chat(w http.ResponseWriter, r *http.Request) {
	req, err := decodeChat(r, true)
	if err == nil {
		err = webapi.Allowed(r.Context(), "model", req.Model)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	creq := chatRequestOf(&req.OpenAIChatRequest)
	ticket, ok := h.admit(w, r, req.Model, webapi.EstimateTokens(creq.Messages), creq.Options.MaxTokens)
	if !ok {
		return
	}
	if !req.Stream {
		c, err := h.models(r.Context()).LLM().Chat(r.Context(), creq, nil)
		u := webapi.UsageOfCall(c.Usage, err)
		defer webapi.Settle(w, r, ticket, u)
		if err != nil {
			writeError(w, r, modelError(err, req.Model))
			return
		}
		webapi.ShowCost(w, ticket, u)
		writeCompletion(w, completion(completionID(), time.Now().Unix(), c.Usage.Model, c.Message, c.FinishReason, usageOf(c.Usage)))
		return
	}
	out := newChunks(w, 2*h.cfg.Heartbeat, completionID(), req.Model, req.IncludeUsage)
	c, err := h.models(r.Context()).LLM().Chat(r.Context(), creq, func(d core.Delta) {
		if d.ToolCall != nil {
			out.toolCall(*d.ToolCall)
			return
		}
		out.content(d.Text)
	})
	defer webapi.Settle(w, r, ticket, webapi.UsageOfCall(c.Usage, err))
	switch {
	case err != nil && !out.started():
		writeError(w, r, modelError(err, req.Model))
	case err != nil:
		_, obj := describe(r, err)
		out.fail(obj)
	default:
		out.finish(c.FinishReason, usageOf(c.Usage))
	}
}

// randomID is 24 hex digits of randomness.
func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
