package wire_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/llm/internal/wire"
)

// TestReusing checks that a client stopping at a stream's last event keeps
// its connection for the next call, and that a body far from its end is
// still closed promptly.
func TestReusing(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := w.(http.Flusher)
		if r.URL.Path == "/endless" {
			// One event, then nothing until the client goes away.
			_, _ = io.WriteString(w, "data: more\n\n")
			f.Flush()
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "data: one\n\ndata: [DONE]\n\n")
		f.Flush()
		// The chunked terminator follows in a write of its own, later.
		time.Sleep(5 * time.Millisecond)
	}))
	t.Cleanup(srv.Close)

	// stream reads events up to [DONE] (or the first one, for /endless)
	// and reports whether the call reused a connection.
	stream := func(hc *http.Client, path string) (reused bool) {
		t.Helper()
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(resp.Body)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended early: %v", err)
			}
			if strings.Contains(line, "[DONE]") || strings.Contains(line, "more") {
				break
			}
		}
		if err := resp.Body.Close(); err != nil {
			t.Fatal(err)
		}
		return reused
	}
	for _, tt := range []struct {
		name string
		hc   *http.Client
		want bool
	}{
		{"plain client loses the connection", &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}, false},
		{"reusing client keeps it", wire.Reusing(&http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stream(tt.hc, "/done")
			if got := stream(tt.hc, "/done"); got != tt.want {
				t.Errorf("second call reused a connection: %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("closing a silent body does not wait for it", func(t *testing.T) {
		hc := wire.Reusing(&http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()})
		done := make(chan struct{})
		go func() {
			defer close(done)
			stream(hc, "/endless")
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Close is still reading a body whose server sends nothing")
		}
	})
}
