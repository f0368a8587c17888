package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/coretest"
)

// commitLog counts, per step index, the commits of a step record that
// succeeded, across every engine of a test.
type commitLog struct {
	mu     sync.Mutex
	byStep map[int][]string // step index -> the engines that committed it
}

// countingStore is an ExecutionStore that reports its successful step
// commits to a commitLog under the engine's name.
type countingStore struct {
	core.ExecutionStore
	name string
	log  *commitLog
}

func (s *countingStore) CommitExecution(ctx context.Context, ex *core.Execution, step *core.Step) error {
	err := s.ExecutionStore.CommitExecution(ctx, ex, step)
	if err == nil && step != nil {
		s.log.mu.Lock()
		s.log.byStep[step.Index] = append(s.log.byStep[step.Index], s.name)
		s.log.mu.Unlock()
	}
	return err
}

// sharedQueue is the one queue both engines send to, drained by the test.
type sharedQueue struct {
	mu   sync.Mutex
	msgs []core.QueueMessage
}

func (q *sharedQueue) Send(_ context.Context, m core.QueueMessage, _ time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.msgs = append(q.msgs, m)
	return nil
}

func (q *sharedQueue) take() []core.QueueMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.msgs
	q.msgs = nil
	return out
}

// worker is one engine over its own Store of a shared database file, as
// two processes on one machine would have.
type worker struct {
	engine *core.Engine
	llm    *coretest.EchoLLM
}

// raceFixture is two workers over one SQLite file, one queue and one log
// of commits.
type raceFixture struct {
	workers [2]*worker
	store   *Store // the first worker's store, for the test's own reads
	queue   *sharedQueue
	log     *commitLog
}

func newRaceFixture(t *testing.T, now func() time.Time, delay time.Duration) *raceFixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", "stepwise.db")
	f := &raceFixture{queue: &sharedQueue{}, log: &commitLog{byStep: map[int][]string{}}}
	for i := range f.workers {
		s, err := Open(context.Background(), path)
		if err != nil {
			t.Fatalf("Open worker %d: %v", i, err)
		}
		t.Cleanup(func() { _ = s.Close() })
		if i == 0 {
			f.store = s
		}
		w := &worker{llm: &coretest.EchoLLM{Delay: delay}}
		w.engine = core.NewEngine(core.EngineConfig{
			Store: &countingStore{ExecutionStore: s, name: fmt.Sprintf("worker%d", i), log: f.log},
			LLM:   w.llm, Queue: f.queue, Now: now,
		})
		f.workers[i] = w
	}
	return f
}

// start creates an n-step execution through the first worker and returns
// its first message.
func (f *raceFixture) start(t *testing.T, n int) core.QueueMessage {
	t.Helper()
	var tasks []string
	for i := 1; i <= n; i++ {
		next := "end"
		if i < n {
			next = fmt.Sprintf("t%d", i+1)
		}
		tasks = append(tasks, fmt.Sprintf(`{"id":"t%d","handler":"prompt_to_string","prompt_template":"step %d","transition":{"branches":[{"operator":"default","goto":"%s"}]}}`, i, i, next))
	}
	chain, _, err := core.ParseChain([]byte(`{"id":"race","tasks":[` + strings.Join(tasks, ",") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := f.workers[0].engine.Start(context.Background(), core.StartRequest{Chain: chain, Input: core.String("go")})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.workers[0].engine.Enqueue(context.Background(), ex); err != nil {
		t.Fatal(err)
	}
	msgs := f.queue.take()
	if len(msgs) != 1 {
		t.Fatalf("Enqueue sent %+v, want one message", msgs)
	}
	return msgs[0]
}

// wantEachStepOnce checks that the execution succeeded after n steps whose
// records are t1..tn at indexes 1..n, and that every step was committed
// by exactly one worker.
func (f *raceFixture) wantEachStepOnce(t *testing.T, id string, n int) {
	t.Helper()
	ctx := context.Background()
	ex, err := f.store.GetExecution(ctx, core.DefaultTenant, id)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Status != core.StatusSucceeded || ex.StepCount != n {
		t.Fatalf("execution %s after %d steps, want succeeded after %d", ex.Status, ex.StepCount, n)
	}
	steps, err := f.store.ListSteps(ctx, core.DefaultTenant, id, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for i, s := range steps {
		if s.Index != i+1 {
			t.Errorf("step record %d has index %d: a gap or a duplicate", i+1, s.Index)
		}
		got = append(got, s.TaskID)
	}
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprintf("t%d", i))
	}
	if !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
	f.log.mu.Lock()
	defer f.log.mu.Unlock()
	for i := 1; i <= n; i++ {
		if by := f.log.byStep[i]; len(by) != 1 {
			t.Errorf("step %d committed by %v, want exactly one worker", i, by)
		}
	}
	if len(f.log.byStep) != n {
		t.Errorf("commits of %d step indexes, want %d", len(f.log.byStep), n)
	}
}

// TestTwoEnginesRaceOnOneExecution delivers every message of an execution
// many times at once from two engines, each over its own Store of the
// same database file: one delivery wins each message, and every step is
// committed once.
func TestTwoEnginesRaceOnOneExecution(t *testing.T) {
	const (
		n      = 8
		copies = 10 // deliveries of each message per engine
	)
	f := newRaceFixture(t, nil, 5*time.Millisecond)
	first := f.start(t, n)
	f.queue.msgs = []core.QueueMessage{first}
	opts := core.DeliverOptions{MaxSteps: 3}
	messages, steps := 0, 0
	for msgs := f.queue.take(); len(msgs) > 0; msgs = f.queue.take() {
		for _, m := range msgs {
			messages++
			if messages > 3*n {
				t.Fatal("the continuations never end")
			}
			ran, ranSteps := f.deliverAtOnce(t, m, opts, copies)
			if ran != 1 {
				t.Errorf("message at version %d: %d deliveries ran, want exactly 1 of %d", m.Version, ran, 2*copies)
			}
			steps += ranSteps
		}
	}
	if steps != n {
		t.Errorf("the winning deliveries ran %d steps, want %d", steps, n)
	}
	f.wantEachStepOnce(t, first.ExecutionID, n)
}

// deliverAtOnce delivers m copies times from each worker, all released at
// the same moment, and returns how many deliveries ran and their steps.
func (f *raceFixture) deliverAtOnce(t *testing.T, m core.QueueMessage, opts core.DeliverOptions, copies int) (ran, steps int) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := make(chan struct{})
	for _, w := range f.workers {
		for range copies {
			wg.Go(func() {
				<-start
				res, err := w.engine.Deliver(context.Background(), m, opts, nil)
				if err != nil {
					t.Errorf("Deliver: %v", err)
					return
				}
				if res.Outcome == core.OutcomeRan {
					mu.Lock()
					ran++
					steps += res.Steps
					mu.Unlock()
				}
			})
		}
	}
	close(start)
	wg.Wait()
	return ran, steps
}

// TestZombieWorkerLosesItsCommit stalls the first engine inside a model
// call until its lease has expired and the second engine, over its own
// Store of the same file, has been sent the execution by its sweeper and
// run it to the end: the stalled worker's step, finished late, is not
// committed.
func TestZombieWorkerLosesItsCommit(t *testing.T) {
	const n = 4
	var clockMu sync.Mutex
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time {
		clockMu.Lock()
		defer clockMu.Unlock()
		return clock
	}
	f := newRaceFixture(t, now, 0)
	zombie, heir := f.workers[0], f.workers[1]
	zombie.llm.Gate = make(chan struct{})
	m := f.start(t, n)

	type outcome struct {
		res core.DeliverResult
		err error
	}
	stalled := make(chan outcome, 1)
	go func() {
		res, err := zombie.engine.Deliver(context.Background(), m, core.DeliverOptions{}, nil)
		stalled <- outcome{res, err}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if zombie.llm.Calls() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first worker never reached its model call")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// The first worker holds the lease: nobody else may run the execution.
	if sent, err := heir.engine.Sweep(context.Background(), core.DefaultTenant, time.Minute); err != nil || sent != 0 {
		t.Fatalf("Sweep while the lease is held = %d, %v; want nothing sent", sent, err)
	}
	clockMu.Lock()
	clock = clock.Add(core.DefaultLeaseTTL + 2*time.Minute)
	clockMu.Unlock()
	if sent, err := heir.engine.Sweep(context.Background(), core.DefaultTenant, time.Minute); err != nil || sent != 1 {
		t.Fatalf("Sweep after the lease expired = %d, %v; want the execution sent", sent, err)
	}
	for msgs := f.queue.take(); len(msgs) > 0; msgs = f.queue.take() {
		for _, msg := range msgs {
			if _, err := heir.engine.Deliver(context.Background(), msg, core.DeliverOptions{}, nil); err != nil {
				t.Fatalf("the second worker's Deliver: %v", err)
			}
		}
	}

	close(zombie.llm.Gate)
	late := <-stalled
	if late.err == nil && late.res.Steps > 0 {
		t.Errorf("the stalled worker reports %d committed steps, want none", late.res.Steps)
	}
	if late.err != nil && core.ErrorCode(late.err) != core.ECONFLICT {
		t.Errorf("the stalled worker's Deliver: %v, want success or ECONFLICT", late.err)
	}
	f.wantEachStepOnce(t, m.ExecutionID, n)
	f.log.mu.Lock()
	defer f.log.mu.Unlock()
	for i, by := range f.log.byStep {
		if !slices.Equal(by, []string{"worker1"}) {
			t.Errorf("step %d committed by %v, want only the second worker", i, by)
		}
	}
}
