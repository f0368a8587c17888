package webapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Stream writes server-sent events. Every streaming route uses it, so that
// they all send the same headers, flush every event at once and give every
// write a deadline of its own.
type Stream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	// wait bounds one write: a client that stops reading is dropped once a
	// write has waited this long.
	wait time.Duration
	buf  bytes.Buffer
}

// StartStream answers 200 with the event-stream headers (and whatever the
// handler set on w.Header() before) and flushes them, which tells the
// client it is subscribed. A writer that cannot flush cannot stream: the
// error says so and nothing more should be written.
//
// A server's write timeout is for ordinary answers; a stream lives as long
// as its client, so each write gets a deadline of wait instead. Writers
// that have no deadline to set are fine.
func StartStream(w http.ResponseWriter, wait time.Duration) (*Stream, error) {
	s := OpenStream(w, wait)
	if err := s.rc.Flush(); err != nil {
		return nil, err
	}
	return s, nil
}

// OpenStream is StartStream without the flush: the headers leave with the
// first event written by Event, Data or Heartbeat, so that a stream whose
// first event is ready at once costs the client one read, not two. Only a
// writer that can flush may be given to it.
func OpenStream(w http.ResponseWriter, wait time.Duration) *Stream {
	s := &Stream{w: w, rc: http.NewResponseController(w), wait: wait}
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.wait))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return s
}

// Queue writes one event like Event but without flushing it: it leaves
// with the next event that is flushed.
func (s *Stream) Queue(id int, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.frame(id, name, b)
	_, err = s.w.Write(s.buf.Bytes())
	return err
}

// Event writes one event: an `id:` line when id > 0, an `event:` line when
// name is not "", and v as JSON on one `data:` line.
func (s *Stream) Event(id int, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.Data(id, name, b)
}

// Data writes one event whose data is b as it is (it must hold no
// newline), such as OpenAI's closing "[DONE]".
func (s *Stream) Data(id int, name string, b []byte) error {
	s.frame(id, name, b)
	return s.flush()
}

// frame puts one event into s.buf.
func (s *Stream) frame(id int, name string, b []byte) {
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
}

// Heartbeat writes a comment line, which keeps an idle stream open through
// proxies and lets the server notice a client that went away.
func (s *Stream) Heartbeat() error {
	s.buf.Reset()
	s.buf.WriteString(": heartbeat\n\n")
	return s.flush()
}

func (s *Stream) flush() error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.wait))
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return err
	}
	return s.rc.Flush()
}
