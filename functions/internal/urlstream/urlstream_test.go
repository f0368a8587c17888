package urlstream_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/stepwise-run/stepwise/functions/internal/urlstream"
)

// event is the fixture: a Function URL request as Lambda delivers it.
func event(t *testing.T) *awsevents.LambdaFunctionURLRequest {
	t.Helper()
	raw, err := os.ReadFile("testdata/function-url-request.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev awsevents.LambdaFunctionURLRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	return &ev
}

// prelude reads what the runtime sends before the body: the JSON of the
// status, headers and cookies, then eight zero bytes.
func prelude(t *testing.T, r *bufio.Reader) map[string]any {
	t.Helper()
	head, err := r.ReadBytes(0)
	if err != nil {
		t.Fatalf("read prelude: %v", err)
	}
	zeros := make([]byte, 7)
	if _, err := io.ReadFull(r, zeros); err != nil || !bytes.Equal(zeros, make([]byte, 7)) {
		t.Fatalf("prelude separator %v, %v", zeros, err)
	}
	var p map[string]any
	if err := json.Unmarshal(head[:len(head)-1], &p); err != nil {
		t.Fatalf("prelude %q: %v", head, err)
	}
	return p
}

func TestRequestFromEvent(t *testing.T) {
	var got *http.Request
	var body []byte
	h := urlstream.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
	}))
	resp, err := h(context.Background(), event(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp); err != nil {
		t.Fatal(err)
	}
	if err := resp.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, got, want string }{
		{"method", got.Method, "POST"},
		{"path", got.URL.Path, "/v1/chat/completions"},
		{"query", fmt.Sprint(got.URL.Query()["trace"]), "[1 2]"},
		{"body (base64 decoded)", string(body), `{"model":"qwen2.5:7b","stream":true}`},
		{"content type", got.Header.Get("Content-Type"), "application/json"},
		{"cookies", got.Header.Get("Cookie"), "a=1; b=2"},
		{"host", got.Host, "abcdefghijklmnopqrstuvwxyz123456.lambda-url.us-east-1.on.aws"},
		{"remote address", got.RemoteAddr, "203.0.113.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
			}
		})
	}
}

// TestStreams shows the response leaving before the handler is done: the
// handler writes its first event and waits until the reader has seen it.
func TestStreams(t *testing.T) {
	seen := make(chan struct{})
	h := urlstream.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		http.SetCookie(w, &http.Cookie{Name: "s", Value: "1"})
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-seen
		fmt.Fprint(w, "data: two\n\n")
	}))
	resp, err := h(context.Background(), event(t))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	r := bufio.NewReader(resp)
	p := prelude(t, r)
	if p["statusCode"] != float64(http.StatusCreated) {
		t.Errorf("status %v, want 201", p["statusCode"])
	}
	if h, _ := p["headers"].(map[string]any); h["Content-Type"] != "text/event-stream" {
		t.Errorf("headers %v", p["headers"])
	}
	if c := fmt.Sprint(p["cookies"]); c != "[s=1]" {
		t.Errorf("cookies %s, want [s=1]", c)
	}
	first, err := r.ReadString('\n')
	if err != nil || first != "data: one\n" {
		t.Fatalf("first line %q, %v", first, err)
	}
	close(seen)
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "\ndata: two\n\n" {
		t.Errorf("rest %q, %v", rest, err)
	}
}

func TestFailures(t *testing.T) {
	t.Run("panic before the header is a 500 in the error envelope", func(t *testing.T) {
		h := urlstream.New(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
		resp, err := h(context.Background(), event(t))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Close()
		r := bufio.NewReader(resp)
		if p := prelude(t, r); p["statusCode"] != float64(http.StatusInternalServerError) {
			t.Errorf("prelude %v, want status 500", p)
		}
		body, err := io.ReadAll(r)
		if !strings.Contains(string(body), `"error"`) || err == nil {
			t.Errorf("body %q, error %v: want the envelope, then a failed stream", body, err)
		}
	})
	t.Run("panic mid-stream fails the stream, not a clean end", func(t *testing.T) {
		h := urlstream.New(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, "data: one\n\n")
			panic("boom")
		}))
		resp, err := h(context.Background(), event(t))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Close()
		if _, err := io.ReadAll(resp); err == nil || !strings.Contains(err.Error(), "boom") {
			t.Errorf("read error %v, want the panic", err)
		}
	})
	t.Run("closing the response cancels a handler still writing", func(t *testing.T) {
		stopped := make(chan error, 1)
		h := urlstream.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			<-r.Context().Done()
			stopped <- r.Context().Err()
		}))
		resp, err := h(context.Background(), event(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := resp.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-stopped; err == nil {
			t.Error("the handler's context was not cancelled")
		}
	})
	t.Run("an invocation that ends before the header returns its error", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		h := urlstream.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cancel()
			<-r.Context().Done()
		}))
		if _, err := h(ctx, event(t)); err == nil {
			t.Error("no error")
		}
	})
}
