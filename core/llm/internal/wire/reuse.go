package wire

import (
	"io"
	"net/http"
	"time"
)

// Bounds on what closing a body reads to let its connection be reused.
const (
	drainBytes = 4 << 10
	drainWait  = 50 * time.Millisecond
)

// Reusing returns a copy of hc whose response bodies, when closed before
// their end, first read what is left of them (at most 4 KiB, for at most
// 50 ms). A streaming client stops at the stream's last event ("data:
// [DONE]") and closes the body before the chunked encoding's terminator,
// which follows in a write of its own; Go's transport then closes the
// connection instead of keeping it, and the next call pays for a new one.
// BenchmarkProxy found four streamed calls in ten dialing afresh.
func Reusing(hc *http.Client) *http.Client {
	c := *hc
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = drainingTransport{rt}
	return &c
}

type drainingTransport struct{ next http.RoundTripper }

func (t drainingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil && resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = &drainingBody{ReadCloser: resp.Body}
	}
	return resp, err
}

type drainingBody struct {
	io.ReadCloser
	eof bool
}

func (b *drainingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close reads the rest of a body that is nearly over; one that is not
// (the caller gave up on a long answer) is cut off by the bounds. A timer
// closes the body under a read that waits, which ends the read.
func (b *drainingBody) Close() error {
	if !b.eof {
		stop := time.AfterFunc(drainWait, func() { _ = b.ReadCloser.Close() })
		_, _ = io.CopyN(io.Discard, b.ReadCloser, drainBytes)
		stop.Stop()
	}
	return b.ReadCloser.Close()
}
