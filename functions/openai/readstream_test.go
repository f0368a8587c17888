package openai_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	goopenai "github.com/sashabaranov/go-openai"
)

// streamed is what a chat completion stream held, read to its end.
type streamed struct {
	text   string
	finish string
	chunks int
	usage  *goopenai.Usage
	// calls are the tool calls assembled from their deltas, by index.
	calls map[int]*goopenai.ToolCall
}

// firstToken reads a stream up to its first piece of text.
func firstToken(t *testing.T, stream *goopenai.ChatCompletionStream) string {
	t.Helper()
	for {
		c, err := stream.Recv()
		if err != nil {
			t.Fatalf("before the first token: %v", err)
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != "" {
				return ch.Delta.Content
			}
		}
	}
}

// readStream reads a stream to its end, failing the test on an error. A
// tool-call delta must carry its index.
func readStream(t *testing.T, stream *goopenai.ChatCompletionStream) streamed {
	t.Helper()
	var (
		out  = streamed{calls: map[int]*goopenai.ToolCall{}}
		text strings.Builder
	)
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out.chunks++
		if c.Usage != nil {
			out.usage = c.Usage
		}
		for _, ch := range c.Choices {
			text.WriteString(ch.Delta.Content)
			if ch.FinishReason != "" {
				out.finish = string(ch.FinishReason)
			}
			for _, tc := range ch.Delta.ToolCalls {
				if tc.Index == nil {
					t.Fatalf("tool-call delta without index: %+v", tc)
				}
				a := out.calls[*tc.Index]
				if a == nil {
					a = &goopenai.ToolCall{}
					out.calls[*tc.Index] = a
				}
				if tc.ID != "" {
					a.ID = tc.ID
				}
				a.Function.Name += tc.Function.Name
				a.Function.Arguments += tc.Function.Arguments
			}
		}
	}
	out.text = text.String()
	return out
}
