package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/fleet"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// waitFor polls cond until it holds, failing the test after a few seconds.
// It synchronises with the background loop; it asserts nothing about
// timing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// run starts f's background loop until the test ends, and checks that it
// returns once its context is canceled.
func run(t *testing.T, f *fleet.Fleet) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
}

// next receives the next progress event, failing the test if none comes.
func next(t *testing.T, ch <-chan fleet.Progress) fleet.Progress {
	t.Helper()
	select {
	case p, ok := <-ch:
		if !ok {
			t.Fatal("the subscription closed")
		}
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no progress event")
	}
	return fleet.Progress{}
}

// requests counts the requests a fake saw with the given method and path.
func requests(f *fakellm.Server, method, path string) int {
	n := 0
	for _, r := range f.Requests() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

// grouped is a snapshot of one Ollama backend "a" at url whose group
// assigns it models; phi4:14b is declared for chat, prompt and streaming.
func grouped(url string, models ...string) *catalog.Snapshot {
	return &catalog.Snapshot{
		Backends: []catalog.Backend{backend("a", catalog.TypeOllama, url, 1)},
		Models: []catalog.Model{
			{ID: "llama3.2:1b", Model: "llama3.2:1b", ContextLength: 4096, CanChat: true},
			{ID: "phi4:14b", Model: "phi4:14b", ContextLength: 16384, CanChat: true, CanPrompt: true, CanStream: true},
		},
		Groups:        []catalog.Group{{ID: "g", Name: "g"}},
		BackendGroups: map[string][]string{"a": {"g"}},
		GroupModels:   map[string][]string{"g": models},
	}
}

func TestDownloads(t *testing.T) {
	srv := fake(t, "llama3.2:1b", "qwen2.5:7b")
	f := newFleet(&source{snap: grouped(srv.URL(), "llama3.2:1b", "phi4:14b")}, &providers{})
	sub := f.Subscribe(t.Context())
	run(t, f)

	t.Run("a missing declared model is pulled with progress", func(t *testing.T) {
		var statuses []string
		sawBytes := false
		for {
			p := next(t, sub)
			if p.Model != "phi4:14b" || p.BaseURL != srv.URL() {
				t.Fatalf("event %+v", p)
			}
			statuses = append(statuses, p.Status)
			sawBytes = sawBytes || (p.Total > 0 && p.Completed == p.Total && p.Digest != "")
			if p.Status == "success" {
				break
			}
		}
		if statuses[0] != "pulling manifest" || !sawBytes {
			t.Errorf("statuses %q (bytes completed: %v)", statuses, sawBytes)
		}
		if n := requests(srv, http.MethodPost, "/api/pull"); n != 1 {
			t.Errorf("%d pulls, want 1 (llama3.2:1b was there already)", n)
		}
	})
	t.Run("the pulled model appears in States", func(t *testing.T) {
		waitFor(t, "phi4:14b is listed", func() bool { return slices.Contains(pulled(stateOf(t, f, "a")), "phi4:14b") })
		s := stateOf(t, f, "a")
		for _, m := range s.PulledModels {
			if m.Name == "phi4:14b" && (!m.CanChat || !m.CanPrompt || !m.CanStream || m.CanEmbed || m.ContextLength != 16384) {
				t.Errorf("pulled model %+v, want the declared capabilities", m)
			}
		}
		if !s.Reachable || s.Error != "" || s.Pull != nil || len(f.Queue()) != 0 {
			t.Errorf("state %+v, queue %+v", s, f.Queue())
		}
		if got, err := ask(f.LLM(), "phi4:14b"); err != nil || got != "name-a" {
			t.Errorf("routing to the pulled model: %q, %v", got, err)
		}
	})
	t.Run("an undeclared model stays", func(t *testing.T) {
		lists := requests(srv, http.MethodGet, "/api/tags")
		f.Kick()
		waitFor(t, "another cycle listed the backend", func() bool { return requests(srv, http.MethodGet, "/api/tags") > lists })
		if !slices.Contains(pulled(stateOf(t, f, "a")), "qwen2.5:7b") {
			t.Errorf("the undeclared model is gone: %q", pulled(stateOf(t, f, "a")))
		}
		for _, r := range srv.Requests() {
			if r.Method == http.MethodDelete || strings.Contains(r.Path, "delete") {
				t.Errorf("the backend got %s %s", r.Method, r.Path)
			}
		}
		if n := requests(srv, http.MethodPost, "/api/pull"); n != 1 {
			t.Errorf("%d pulls, want no new one", n)
		}
	})
}

func TestDownloadCancel(t *testing.T) {
	srv := fake(t, "llama3.2:1b")
	srv.Script(fakellm.Reply{Match: "phi4", Latency: time.Minute})
	f := newFleet(&source{snap: grouped(srv.URL(), "phi4:14b")}, &providers{})
	sub := f.Subscribe(t.Context())
	run(t, f)

	if p := next(t, sub); p.Status != "pulling manifest" {
		t.Fatalf("first event %+v", p)
	}
	if s := stateOf(t, f, "a"); s.Pull == nil || s.Pull.Status != "pulling manifest" || s.Pull.Model != "phi4:14b" {
		t.Errorf("running pull shows as %+v", s.Pull)
	}
	for _, tt := range []struct {
		name, url, model string
		want             int
	}{
		{"another model", "", "gemma3:4b", 0},
		{"another backend", "http://127.0.0.1:1", "", 0},
		{"the backend, with a trailing slash", srv.URL() + "/", "", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if n := f.Cancel(tt.url, tt.model); n != tt.want {
				t.Errorf("canceled %d, want %d", n, tt.want)
			}
		})
	}
	waitFor(t, "the pull stopped", func() bool { return stateOf(t, f, "a").Pull == nil })
	s := stateOf(t, f, "a")
	if slices.Contains(pulled(s), "phi4:14b") || s.Error != "" {
		t.Errorf("after the cancel: %+v (a canceled pull is not an error)", s)
	}
	if n := f.Cancel("", ""); n != 0 {
		t.Errorf("canceled %d after the pull stopped", n)
	}
}

func TestDownloadQueue(t *testing.T) {
	srv := fake(t)
	srv.Script(fakellm.Reply{Latency: time.Minute}) // every pull hangs after its first step
	f := newFleet(&source{snap: grouped(srv.URL(), "phi4:14b", "gemma3:4b")}, &providers{})
	sub := f.Subscribe(t.Context())
	run(t, f)

	if p := next(t, sub); p.Model != "phi4:14b" {
		t.Fatalf("first pull %+v, want phi4:14b", p)
	}
	want := []fleet.Job{{
		ID:           srv.URL() + "/gemma3:4b",
		TaskType:     fleet.TaskModelDownload,
		ModelJob:     fleet.ModelJob{URL: srv.URL(), Model: "gemma3:4b"},
		ScheduledFor: epoch,
		ValidUntil:   epoch.Add(time.Hour),
		CreatedAt:    epoch,
	}}
	if got := f.Queue(); !slices.Equal(got, want) {
		t.Fatalf("queue %+v, want %+v", got, want)
	}
	if n := requests(srv, http.MethodPost, "/api/pull"); n != 1 {
		t.Errorf("%d pulls at once on one backend, want 1", n)
	}
	for _, tt := range []struct {
		model string
		want  int
	}{{"phi4:14b", 0}, {"gemma3:4b", 1}, {"gemma3:4b", 0}} {
		if n := f.RemoveQueued(tt.model); n != tt.want {
			t.Errorf("RemoveQueued(%s) = %d, want %d", tt.model, n, tt.want)
		}
	}
	if q := f.Queue(); len(q) != 0 {
		t.Errorf("queue %+v after removal", q)
	}
	if n := f.Cancel(srv.URL(), "phi4:14b"); n != 1 {
		t.Fatalf("canceled %d, want 1", n)
	}
	waitFor(t, "the pull stopped", func() bool { return stateOf(t, f, "a").Pull == nil })
	if n := requests(srv, http.MethodPost, "/api/pull"); n != 1 {
		t.Errorf("%d pulls, want none for the removed job", n)
	}
}

func TestSlowSubscriberNeverBlocksPulls(t *testing.T) {
	srv := fake(t)
	var models []string
	for i := range 12 { // 12 pulls of 8 steps: more than a subscriber buffers
		models = append(models, "m"+string(rune('a'+i))+":1b")
	}
	f := newFleet(&source{snap: grouped(srv.URL(), models...)}, &providers{})
	ctx, cancel := context.WithCancel(context.Background())
	stalled := f.Subscribe(ctx) // never read until the end
	run(t, f)

	waitFor(t, "every model is pulled", func() bool { return len(pulled(stateOf(t, f, "a"))) == len(models) })
	cancel()
	n := 0
	for range stalled {
		n++
	}
	if n == 0 || n >= len(models)*8 {
		t.Errorf("the stalled subscriber got %d events, want some but not all %d", n, len(models)*8)
	}
}

// clock is a test clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// set moves the clock to d after the epoch.
func (c *clock) set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = epoch.Add(d)
}

// logBuffer collects a JSON log; it is safe for concurrent writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// records returns the records of the log whose message is msg.
func (l *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(l.buf.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// stepped returns a fleet over src on clk, which the test steps with
// cycle, logging to logs (nil: nowhere). Its sync interval of 10 s makes
// the first retry of a failed pull wait the minimum of 30 s.
func stepped(src *source, clk *clock, logs *logBuffer) *fleet.Fleet {
	logger := slog.New(slog.DiscardHandler)
	if logs != nil {
		logger = slog.New(slog.NewJSONHandler(logs, nil))
	}
	return fleet.New(fleet.Config{
		Source:       src,
		NewProvider:  (&providers{}).New,
		SyncInterval: 10 * time.Second,
		Logger:       logger,
		Now:          clk.Now,
	})
}

// cycle runs one cycle of f at d after the epoch and waits for its pulls.
func cycle(t *testing.T, f *fleet.Fleet, clk *clock, d time.Duration) {
	t.Helper()
	clk.set(d)
	f.CycleForTest(t.Context())()
}

func TestDownloadBackoff(t *testing.T) {
	srv := fake(t)
	srv.Script(fakellm.Reply{Match: "phi4", Status: http.StatusInternalServerError, Text: "disk full", Times: 3})
	clk, logs := &clock{}, &logBuffer{}
	f := stepped(&source{snap: grouped(srv.URL(), "phi4:14b")}, clk, logs)

	const s = time.Second
	steps := []struct {
		name   string
		at     time.Duration // when the cycle runs
		before func()
		pulls  int // pulls so far
		// failedAt and due are when the last pull failed and its retry is
		// queued for; due is 0 when no retry is queued.
		failedAt, due time.Duration
		attempt       int // of the last failure, in the state and the log; 0 = none
		logged        int // "pull failed" records so far
	}{
		{name: "the first pull fails", at: 0, pulls: 1, failedAt: 0, due: 30 * s, attempt: 1, logged: 1},
		{name: "no retry before the backoff ends", at: 29 * s, pulls: 1, failedAt: 0, due: 30 * s, attempt: 1, logged: 1},
		{name: "a retry once it ends", at: 30 * s, pulls: 2, failedAt: 30 * s, due: 90 * s, attempt: 2, logged: 2},
		{name: "the next backoff is twice as long", at: 89 * s, pulls: 2, failedAt: 30 * s, due: 90 * s, attempt: 2, logged: 2},
		{name: "and the one after that", at: 90 * s, pulls: 3, failedAt: 90 * s, due: 210 * s, attempt: 3, logged: 3},
		{name: "a success clears the failure", at: 210 * s, pulls: 4, logged: 3},
		{name: "the next failure starts the backoff afresh", at: 300 * s, before: func() {
			srv.SetModels() // the model is gone again
			srv.Script(fakellm.Reply{Match: "phi4", Status: http.StatusInternalServerError, Text: "disk full", Times: 1})
		}, pulls: 5, failedAt: 300 * s, due: 330 * s, attempt: 1, logged: 4},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.before != nil {
				st.before()
			}
			cycle(t, f, clk, st.at)
			if n := requests(srv, http.MethodPost, "/api/pull"); n != st.pulls {
				t.Errorf("%d pulls, want %d", n, st.pulls)
			}
			var want []fleet.Job
			if st.due != 0 {
				want = []fleet.Job{{
					ID:           srv.URL() + "/phi4:14b",
					TaskType:     fleet.TaskModelDownload,
					ModelJob:     fleet.ModelJob{URL: srv.URL(), Model: "phi4:14b"},
					ScheduledFor: epoch.Add(st.due),
					ValidUntil:   epoch.Add(st.due + time.Hour),
					CreatedAt:    epoch.Add(st.failedAt),
				}}
			}
			if got := f.Queue(); !slices.Equal(got, want) {
				t.Errorf("queue %+v, want %+v", got, want)
			}

			state := stateOf(t, f, "a")
			if st.attempt == 0 {
				if state.Error != "" || !slices.Contains(pulled(state), "phi4:14b") {
					t.Errorf("state %+v, want the model pulled and no error", state)
				}
			} else {
				retry := fmt.Sprintf("(attempt %d, next try at %s)", st.attempt, epoch.Add(st.due).Format(time.RFC3339))
				if !strings.HasPrefix(state.Error, "pull phi4:14b: ") || !strings.Contains(state.Error, "disk full") ||
					!strings.HasSuffix(state.Error, retry) {
					t.Errorf("error %q, want the failed pull, its cause and %q", state.Error, retry)
				}
			}

			recs := logs.records(t, "fleet: pull failed")
			if len(recs) != st.logged {
				t.Fatalf("%d failures logged, want %d: %v", len(recs), st.logged, recs)
			}
			if st.attempt == 0 {
				return
			}
			last := recs[len(recs)-1]
			next, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(last["nextTry"]))
			if last["backend"] != "a" || last["url"] != srv.URL() || last["model"] != "phi4:14b" ||
				last["attempt"] != float64(st.attempt) || !next.Equal(epoch.Add(st.due)) ||
				!strings.Contains(fmt.Sprint(last["err"]), "disk full") {
				t.Errorf("logged %v", last)
			}
		})
	}
}

func TestDownloadHold(t *testing.T) {
	stops := []struct {
		name  string
		first fakellm.Reply // how the first pull goes; later ones succeed
		stop  func(t *testing.T, f *fleet.Fleet, url string, progress <-chan fleet.Progress, wait func())
	}{
		{
			name:  "canceled while running",
			first: fakellm.Reply{Match: "phi4", Latency: time.Minute, Times: 1},
			stop: func(t *testing.T, f *fleet.Fleet, url string, progress <-chan fleet.Progress, wait func()) {
				if p := next(t, progress); p.Status != "pulling manifest" {
					t.Fatalf("first event %+v", p)
				}
				if n := f.Cancel(url, "phi4:14b"); n != 1 {
					t.Fatalf("canceled %d, want 1", n)
				}
				wait()
			},
		},
		{
			name:  "removed from the queue while waiting out its backoff",
			first: fakellm.Reply{Match: "phi4", Status: http.StatusInternalServerError, Text: "disk full", Times: 1},
			stop: func(t *testing.T, f *fleet.Fleet, _ string, _ <-chan fleet.Progress, wait func()) {
				wait()
				if n := f.RemoveQueued("phi4:14b"); n != 1 {
					t.Fatalf("removed %d, want 1", n)
				}
			},
		},
	}
	ungrouped := func(url string) *catalog.Snapshot {
		s := grouped(url, "phi4:14b")
		s.BackendGroups = nil
		return s
	}
	reregistered := func(url string) *catalog.Snapshot {
		s := grouped(url, "phi4:14b")
		s.Backends = []catalog.Backend{backend("a2", catalog.TypeOllama, url, 5)}
		s.BackendGroups = map[string][]string{"a2": {"g"}}
		return s
	}
	assigned := func(url string) *catalog.Snapshot { return grouped(url, "phi4:14b") }
	unassigned := func(url string) *catalog.Snapshot { return grouped(url) }
	returns := []struct {
		name string
		// changes are the snapshots the cycles after the hold see, each
		// reloaded before its cycle; the model must be pulled by the cycle
		// after the last one.
		changes []func(url string) *catalog.Snapshot
		restart bool
	}{
		{name: "the model unassigned, then assigned again", changes: []func(string) *catalog.Snapshot{unassigned, assigned}},
		{name: "the backend out of its groups, then back", changes: []func(string) *catalog.Snapshot{ungrouped, assigned}},
		{name: "the backend registered again", changes: []func(string) *catalog.Snapshot{reregistered}},
		{name: "a restart", restart: true},
	}
	for _, stop := range stops {
		for _, ret := range returns {
			t.Run(stop.name+"/"+ret.name, func(t *testing.T) {
				srv := fake(t)
				srv.Script(stop.first)
				src := &source{snap: grouped(srv.URL(), "phi4:14b")}
				clk := &clock{}
				f := stepped(src, clk, nil)
				progress := f.Subscribe(t.Context())
				stop.stop(t, f, srv.URL(), progress, f.CycleForTest(t.Context()))

				for _, at := range []time.Duration{time.Minute, time.Hour, 2 * time.Hour} {
					cycle(t, f, clk, at)
					if n, q := requests(srv, http.MethodPost, "/api/pull"), f.Queue(); n != 1 || len(q) != 0 {
						t.Fatalf("at %v: %d pulls, queue %+v; want the download held", at, n, q)
					}
				}
				if s := stateOf(t, f, "a"); s.Error != "" {
					t.Errorf("error %q for a download the user stopped", s.Error)
				}

				if ret.restart {
					f = stepped(src, clk, nil)
				}
				for _, change := range ret.changes {
					src.set(change(srv.URL()), nil)
					if err := f.Reload(t.Context()); err != nil { // as a catalog write does
						t.Fatal(err)
					}
					cycle(t, f, clk, 3*time.Hour)
				}
				cycle(t, f, clk, 3*time.Hour)
				if n := requests(srv, http.MethodPost, "/api/pull"); n != 2 {
					t.Errorf("%d pulls, want the model pulled again", n)
				}
			})
		}
	}
}
