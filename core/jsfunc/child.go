package jsfunc

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// The child protocol: one JSON object a line each way. The parent sends
// a run; the child answers with calls of builtins, each of which the
// parent answers with a reply, and ends the run with done. One run at a
// time per child.
type message struct {
	Op string `json:"op"` // run, call, reply, done
	ID uint64 `json:"id"`

	// run
	Name     string         `json:"name,omitempty"`
	Source   string         `json:"source,omitempty"`
	Globals  map[string]any `json:"globals,omitempty"`
	Entry    string         `json:"entry,omitempty"`
	Arg      string         `json:"arg,omitempty"`
	Builtins []string       `json:"builtins,omitempty"`
	Limits   *Limits        `json:"limits,omitempty"`
	Reuse    string         `json:"reuse,omitempty"`

	// call (Name) and reply
	Args   []any  `json:"args,omitempty"`
	Result any    `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`

	// done
	Logs        []string  `json:"logs,omitempty"`
	Interrupted bool      `json:"interrupted,omitempty"`
	Started     time.Time `json:"started,omitzero"`
	Duration    int64     `json:"duration_ns,omitempty"`
}

// maxLine bounds one protocol line: a script's source, globals or result
// with room to spare.
const maxLine = 8 << 20

// ChildRequest is a run for a child process: the source rather than a
// compiled program, which the child compiles (and keeps) itself.
type ChildRequest struct {
	Name, Source string
	Globals      map[string]any
	Entry, Arg   string
	Builtins     []string
	Limits       Limits
	// ReuseKey is Request.ReuseKey.
	ReuseKey string
}

// Serve is a child process's loop: it reads runs from in until in ends,
// runs each in a fresh runtime of its own sandbox, and writes calls and
// results to out. Compiled programs are kept by the hash of their
// source.
func Serve(ctx context.Context, in io.Reader, out io.Writer) error {
	sb := New()
	r := bufio.NewReaderSize(in, 64<<10)
	enc := json.NewEncoder(out)
	programs := map[[32]byte]*Program{}
	for {
		m, err := readMessage(r)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if m.Op != "run" {
			return fmt.Errorf("child: %q where a run was expected", m.Op)
		}
		key := sha256.Sum256([]byte(m.Name + "\x00" + m.Source))
		prog := programs[key]
		done := message{Op: "done", ID: m.ID}
		if prog == nil {
			if prog, err = Compile(m.Name, m.Source); err != nil {
				done.Error = err.Error()
				if err := enc.Encode(done); err != nil {
					return err
				}
				continue
			}
			if len(programs) > 1000 {
				clear(programs)
			}
			programs[key] = prog
		}
		host := &pipeHost{id: m.ID, r: r, enc: enc}
		limits := Limits{}
		if m.Limits != nil {
			limits = *m.Limits
		}
		res := sb.Do(ctx, Request{Program: prog, Globals: m.Globals, Entry: m.Entry, Arg: m.Arg, Builtins: m.Builtins, Host: host, Limits: limits, ReuseKey: m.Reuse})
		if host.err != nil {
			return host.err
		}
		done.Result, done.Logs, done.Started, done.Duration = res.Result, res.Logs, res.Started, int64(res.Duration)
		if res.Err != nil {
			done.Error, done.Interrupted = res.Err.Error(), errors.Is(res.Err, ErrInterrupted)
		}
		if err := enc.Encode(done); err != nil {
			return err
		}
	}
}

func readMessage(r *bufio.Reader) (message, error) {
	var line []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return message{}, err
		}
		line = append(line, chunk...)
		if len(line) > maxLine {
			return message{}, fmt.Errorf("child: a line over %d bytes", maxLine)
		}
		if !isPrefix {
			break
		}
	}
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return message{}, fmt.Errorf("child: %w", err)
	}
	return m, nil
}

// pipeHost is a child's Host: each call goes to the parent, which answers
// with a reply.
type pipeHost struct {
	id  uint64
	r   *bufio.Reader
	enc *json.Encoder
	// err is a broken pipe: the run cannot go on.
	err error
}

func (h *pipeHost) Call(_ context.Context, name string, args []any) (any, error) {
	if h.err != nil {
		return nil, h.err
	}
	if err := h.enc.Encode(message{Op: "call", ID: h.id, Name: name, Args: args}); err != nil {
		h.err = err
		return nil, err
	}
	m, err := readMessage(h.r)
	if err != nil {
		h.err = err
		return nil, err
	}
	if m.Op != "reply" || m.ID != h.id {
		h.err = fmt.Errorf("child: %q for run %d where the reply of run %d was expected", m.Op, m.ID, h.id)
		return nil, h.err
	}
	if m.Error != "" {
		return nil, errors.New(m.Error)
	}
	return m.Result, nil
}
