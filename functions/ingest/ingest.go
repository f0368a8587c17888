// Package ingest is the webhook ingest function: it takes raw webhook
// payloads, stores them as raw events and maps them to domain events.
//
// Not built yet: until the issue that builds it, every request is answered
// 501 Not Implemented in the OpenAI error envelope. The Lambda entry point
// (functions/ingest/lambda) is in place, so that issue changes only this
// package.
package ingest

import (
	"net/http"

	"github.com/stepwise-run/stepwise/functions/internal/unimplemented"
)

// New returns the function's handler.
func New() http.Handler { return unimplemented.Handler("webhook ingest") }
