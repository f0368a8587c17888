package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// eventStream writes server-sent events. It is shared by every streaming
// route so that they all set the same headers, flush every event at once
// and give every write a deadline of its own.
type eventStream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	// wait bounds one write: a client that stops reading is dropped once a
	// write has waited this long.
	wait time.Duration
	buf  bytes.Buffer
}

// startStream answers 200 with the event-stream headers and flushes them,
// which tells the client it is subscribed. A writer that cannot flush
// cannot stream: the error says so and nothing more should be written.
//
// The server's write timeout is for ordinary answers; a stream lives as
// long as its client, so each write gets a deadline of two heartbeats
// instead. Writers that have no deadline to set are fine.
func (a *API) startStream(w http.ResponseWriter) (*eventStream, error) {
	s := &eventStream{w: w, rc: http.NewResponseController(w), wait: 2 * a.cfg.Heartbeat}
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.wait))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := s.rc.Flush(); err != nil {
		return nil, err
	}
	return s, nil
}

// event writes one event: an `id:` line when id > 0, an `event:` line when
// name is not "", and v as JSON on one `data:` line.
func (s *eventStream) event(id int, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.buf.Reset()
	if id > 0 {
		s.buf.WriteString("id: " + strconv.Itoa(id) + "\n")
	}
	if name != "" {
		s.buf.WriteString("event: " + name + "\n")
	}
	s.buf.WriteString("data: ")
	s.buf.Write(b)
	s.buf.WriteString("\n\n")
	return s.flush()
}

// heartbeat writes a comment line, which keeps an idle stream open
// through proxies and lets the server notice a client that went away.
func (s *eventStream) heartbeat() error {
	s.buf.Reset()
	s.buf.WriteString(": heartbeat\n\n")
	return s.flush()
}

func (s *eventStream) flush() error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.wait))
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return err
	}
	return s.rc.Flush()
}
