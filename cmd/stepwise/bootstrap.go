package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/llm"
)

// bootstrapOptions are the settings of `stepwise bootstrap`.
type bootstrapOptions struct {
	server    string
	ollama    string
	name      string
	context   int
	wait      time.Duration
	noWait    bool
	embed     string
	task      string
	chat      string
	httpTries time.Duration
}

// bootstrapCommand is `stepwise bootstrap [flags] EMBED_MODEL TASK_MODEL
// CHAT_MODEL`: what the seed's scripts/bootstrap.sh did, against a
// running server. It registers the Ollama backend, puts it in the three
// built-in groups, declares the three models in their groups when the
// server does not know them yet, and waits until the backend has them.
func bootstrapCommand(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("stepwise bootstrap", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: stepwise bootstrap [flags] EMBED_MODEL TASK_MODEL CHAT_MODEL")
		fs.PrintDefaults()
	}
	o := bootstrapOptions{}
	fs.StringVar(&o.server, "server", envOr(e, "STEPWISE_URL", "http://"+defaultAddr), "the stepwise server (env STEPWISE_URL)")
	fs.StringVar(&o.ollama, "ollama", envOr(e, "OLLAMA_BACKEND_URL", defaultOllama), "the Ollama server the stepwise server reaches (env OLLAMA_BACKEND_URL)")
	fs.StringVar(&o.name, "name", catalog.DefaultOllamaName, "name of the backend to register")
	fs.IntVar(&o.context, "context", catalog.DefaultContextLength, "context length of models it declares")
	fs.DurationVar(&o.wait, "wait", 7*time.Minute, "how long to wait for the models to be downloaded")
	fs.BoolVar(&o.noWait, "no-wait", false, "do not wait for the downloads")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != 3 {
		fs.Usage()
		return exitUsage
	}
	o.embed, o.task, o.chat = fs.Arg(0), fs.Arg(1), fs.Arg(2)
	o.httpTries = 30 * time.Second
	c := &apiClient{base: strings.TrimRight(o.server, "/"), hc: &http.Client{Timeout: 30 * time.Second}}
	if err := bootstrap(ctx, c, o, e); err != nil {
		fmt.Fprintf(e.stderr, "stepwise: bootstrap: %s\n", oneLine(err.Error()))
		return exitFailed
	}
	return exitOK
}

func bootstrap(ctx context.Context, c *apiClient, o bootstrapOptions, e env) error {
	say := func(format string, args ...any) { fmt.Fprintf(e.stdout, format+"\n", args...) }
	if err := c.waitHealthy(ctx, o.httpTries); err != nil {
		return err
	}
	var ver struct {
		Version string `json:"version"`
	}
	if err := c.call(ctx, http.MethodGet, "/version", nil, &ver); err != nil {
		return err
	}
	say("server %s is up (version %s)", c.base, ver.Version)

	backend, err := c.ensureBackend(ctx, o.name, o.ollama)
	if err != nil {
		return err
	}
	say("backend %s (%s) at %s", backend.Name, backend.ID, backend.BaseURL)
	groups := []string{catalog.GroupTasks, catalog.GroupEmbed, catalog.GroupChat}
	for _, g := range groups {
		// Assigning is idempotent: a backend already in the group stays.
		if err := c.call(ctx, http.MethodPost, "/backend-affinity/"+url.PathEscape(g)+"/backends/"+url.PathEscape(backend.ID), nil, nil); err != nil {
			return err
		}
		say("assigned %s to %s", backend.Name, g)
	}
	// A model may fill more than one role (the seed uses one model for
	// tasks and chat): it is declared once, able to do all of them, and put
	// in each role's group.
	type role struct {
		name, group string
		caps        catalog.Model
	}
	roles := []role{
		{o.embed, catalog.GroupEmbed, catalog.Model{CanEmbed: true}},
		{o.task, catalog.GroupTasks, catalog.Model{CanPrompt: true, CanChat: true}},
		{o.chat, catalog.GroupChat, catalog.Model{CanChat: true, CanPrompt: true, CanStream: true}},
	}
	declared := map[string]*catalog.Model{}
	var order []string
	for _, r := range roles {
		m := declared[r.name]
		if m == nil {
			m = &catalog.Model{Model: r.name, ContextLength: o.context}
			declared[r.name] = m
			order = append(order, r.name)
		}
		m.CanEmbed = m.CanEmbed || r.caps.CanEmbed
		m.CanPrompt = m.CanPrompt || r.caps.CanPrompt
		m.CanChat = m.CanChat || r.caps.CanChat
		m.CanStream = m.CanStream || r.caps.CanStream
	}
	for _, name := range order {
		want := declared[name]
		var have catalog.Model
		err := c.call(ctx, http.MethodGet, "/models/"+url.PathEscape(name), nil, &have)
		switch {
		case httpStatus(err) == http.StatusNotFound:
			if err = c.call(ctx, http.MethodPost, "/models", want, nil); err == nil {
				say("declared model %s", name)
			}
		case err == nil && !covers(have, *want):
			// Declared already, but not for every role it now fills: widen
			// it, keeping its context length.
			have.CanEmbed, have.CanPrompt = have.CanEmbed || want.CanEmbed, have.CanPrompt || want.CanPrompt
			have.CanChat, have.CanStream = have.CanChat || want.CanChat, have.CanStream || want.CanStream
			upd := catalog.Model{Model: have.Model, ContextLength: have.ContextLength,
				CanEmbed: have.CanEmbed, CanPrompt: have.CanPrompt, CanChat: have.CanChat, CanStream: have.CanStream}
			if err = c.call(ctx, http.MethodPut, "/models/"+url.PathEscape(name), upd, nil); err == nil {
				say("widened model %s to its roles", name)
			}
		}
		if err != nil {
			return err
		}
	}
	for _, r := range roles {
		if err := c.call(ctx, http.MethodPost, "/model-affinity/"+url.PathEscape(r.group)+"/models/"+url.PathEscape(r.name), nil, nil); err != nil {
			return err
		}
	}
	if o.noWait {
		return nil
	}
	want := []string{o.embed, o.task, o.chat}
	say("waiting up to %s for %s on %s", o.wait, strings.Join(want, ", "), backend.Name)
	deadline := time.Now().Add(o.wait)
	for {
		var st struct {
			PulledModels []pulledModel `json:"pulledModels"`
			Error        string        `json:"error"`
		}
		if err := c.call(ctx, http.MethodGet, "/backends/"+url.PathEscape(backend.ID), nil, &st); err != nil {
			return err
		}
		var missing []string
		for _, w := range want {
			if !slices.ContainsFunc(st.PulledModels, func(p pulledModel) bool { return llm.ModelKey(p.Name) == llm.ModelKey(w) && p.Size > 0 }) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			say("ready: %s", strings.Join(want, ", "))
			return nil
		}
		if time.Now().After(deadline) {
			msg := "still missing " + strings.Join(missing, ", ")
			if st.Error != "" {
				msg += " (backend: " + st.Error + ")"
			}
			return errors.New(msg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// covers reports whether have may do everything want asks for.
func covers(have, want catalog.Model) bool {
	return (have.CanEmbed || !want.CanEmbed) && (have.CanPrompt || !want.CanPrompt) &&
		(have.CanChat || !want.CanChat) && (have.CanStream || !want.CanStream)
}

// pulledModel is the part of a backend's pulledModels entry bootstrap reads.
type pulledModel struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// apiClient calls a stepwise server's API.
type apiClient struct {
	base string
	hc   *http.Client
}

// statusError is a non-2xx answer.
type statusError struct {
	status int
	msg    string
}

func (s *statusError) Error() string { return fmt.Sprintf("HTTP %d: %s", s.status, s.msg) }

func httpStatus(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.status
	}
	return 0
}

// call sends body as JSON and decodes a 2xx answer into out (when not
// nil); any other answer is a *statusError carrying the server's message.
func (c *apiClient) call(ctx context.Context, method, path string, body, out any) error {
	_, err := c.do(ctx, method, path, body, out)
	return err
}

// do is call that also returns the answer's header.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var env struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &env) == nil && env.Error.Message != "" {
			msg = env.Error.Message
		}
		return resp.Header, &statusError{status: resp.StatusCode, msg: fmt.Sprintf("%s %s: %s", method, path, msg)}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.Header, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

// waitHealthy polls /health until it answers 200 or patience runs out.
func (c *apiClient) waitHealthy(ctx context.Context, patience time.Duration) error {
	deadline := time.Now().Add(patience)
	for {
		err := c.call(ctx, http.MethodGet, "/health", nil, nil)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server %s is not healthy: %w", c.base, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ensureBackend returns the backend named name, creating it when absent.
func (c *apiClient) ensureBackend(ctx context.Context, name, baseURL string) (catalog.Backend, error) {
	path := "/backends?limit=1000"
	for path != "" {
		var page []catalog.Backend
		h, err := c.do(ctx, http.MethodGet, path, nil, &page)
		if err != nil {
			return catalog.Backend{}, err
		}
		for _, b := range page {
			if b.Name == name {
				return b, nil
			}
		}
		path = ""
		if next := h.Get("X-Next-Cursor"); next != "" {
			path = "/backends?limit=1000&cursor=" + url.QueryEscape(next)
		}
	}
	var b catalog.Backend
	err := c.call(ctx, http.MethodPost, "/backends", map[string]string{"name": name, "baseURL": baseURL, "type": catalog.TypeOllama}, &b)
	return b, err
}
