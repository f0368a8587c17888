// Package openai is the OpenAI-compatible function: /v1/chat/completions
// (a chain, or a plain routed model, streaming the answering step's tokens
// as they are generated) and /v1/models. On AWS it runs behind a Function
// URL with InvokeMode RESPONSE_STREAM (functions/openai/lambda).
//
// Not built yet: until the issue that builds it, every request is answered
// 501 Not Implemented in the OpenAI error envelope. The entry point and its
// streaming path are in place, so that issue changes only this package.
package openai

import (
	"net/http"

	"github.com/stepwise-run/stepwise/functions/internal/unimplemented"
)

// New returns the function's handler.
func New() http.Handler { return unimplemented.Handler("the OpenAI-compatible endpoint") }
