package coretest

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// sentQueue is a core.Queue that keeps what is sent, for the test to
// deliver by hand.
type sentQueue struct {
	mu   sync.Mutex
	msgs []core.QueueMessage
	fail error
}

func (q *sentQueue) Send(_ context.Context, m core.QueueMessage, _ time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail != nil {
		return q.fail
	}
	q.msgs = append(q.msgs, m)
	return nil
}

// take removes and returns what was sent so far.
func (q *sentQueue) take() []core.QueueMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.msgs
	q.msgs = nil
	return out
}

// testClock is an engine clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// effectHook is a core.Tools with one hook, "effect", that records the
// idempotency key of every call: the remote side a re-run step calls again.
type effectHook struct {
	mu   sync.Mutex
	keys []string
}

func (h *effectHook) Hooks(context.Context, string) ([]string, error) { return []string{"effect"}, nil }

func (h *effectHook) ToolsOf(_ context.Context, _, hook string) ([]core.Tool, error) {
	if hook != "effect" {
		return nil, core.Errorf(core.ENOTFOUND, "no hook %q", hook)
	}
	return []core.Tool{{Type: "function", Function: core.ToolFunction{Name: "effect"}}}, nil
}

func (h *effectHook) Call(_ context.Context, call core.HookCall) (core.Value, error) {
	if call.Hook != "effect" {
		return core.Value{}, core.Errorf(core.ENOTFOUND, "no hook %q", call.Hook)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keys = append(h.keys, call.IdempotencyKey)
	return core.String("effect done"), nil
}

// seen returns the keys of the calls so far, in call order.
func (h *effectHook) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.keys)
}

// deliverFixture is an engine over the in-memory store with a queue the
// test drains.
type deliverFixture struct {
	engine *core.Engine
	store  core.ExecutionStore
	queue  *sentQueue
	clock  *testClock
	llm    *EchoLLM
	hook   *effectHook
	meter  *stepMeter
}

// stepMeter is a core.StepMeter that counts the calls for each step index.
type stepMeter struct {
	mu      sync.Mutex
	metered map[int]int
}

func (m *stepMeter) AdmitStep(context.Context, *core.Execution) error { return nil }

func (m *stepMeter) MeterStep(_ context.Context, _ *core.Execution, st *core.Step) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.metered[st.Index]++
	return nil
}

// counts returns the calls for steps 1 to n.
func (m *stepMeter) counts(n int) []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int, n)
	for i := range out {
		out[i] = m.metered[i+1]
	}
	return out
}

func newDeliverFixture(t *testing.T, newStore func(t *testing.T) core.ExecutionStore, failpoint string, maxHops int) *deliverFixture {
	t.Helper()
	f := &deliverFixture{store: newStore(t), queue: &sentQueue{}, clock: &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, llm: &EchoLLM{}, hook: &effectHook{},
		meter: &stepMeter{metered: map[int]int{}}}
	armed := failpoint != ""
	var mu sync.Mutex
	f.engine = core.NewEngine(core.EngineConfig{
		Store: f.store, LLM: f.llm, Tools: f.hook, Queue: f.queue, Now: f.clock.now, MaxHops: maxHops, Meter: f.meter,
		Failpoint: func(name string) {
			mu.Lock()
			fire := armed && name == failpoint
			if fire {
				armed = false // a worker dies once; its successor does not
			}
			mu.Unlock()
			if fire {
				// The worker dies here: its goroutine ends without
				// returning, and nothing the engine would do next
				// happens. (A panic would not do: the engine turns a
				// handler's panic into a failed attempt, and a hook
				// failpoint fires inside the handler.)
				runtime.Goexit()
			}
		},
	})
	return f
}

// stepsChain returns a chain of n prompt tasks, each feeding the next;
// the tasks whose numbers are in hooks call the effect hook instead.
func stepsChain(t *testing.T, n int, hooks ...int) *core.Chain {
	t.Helper()
	var tasks []string
	for i := 1; i <= n; i++ {
		next := "end"
		if i < n {
			next = fmt.Sprintf("t%d", i+1)
		}
		run := fmt.Sprintf(`"handler":"prompt_to_string","prompt_template":"step %d"`, i)
		if slices.Contains(hooks, i) {
			run = `"handler":"hook","hook":{"name":"effect"}`
		}
		tasks = append(tasks, fmt.Sprintf(`{"id":"t%d",%s,"transition":{"branches":[{"operator":"default","goto":"%s"}]}}`, i, run, next))
	}
	c, _, err := core.ParseChain([]byte(`{"id":"c","tasks":[` + strings.Join(tasks, ",") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// start creates an execution of stepsChain(steps, hooks...) and returns
// its first message.
func (f *deliverFixture) start(t *testing.T, steps int, hooks ...int) core.QueueMessage {
	t.Helper()
	ex, err := f.engine.Start(context.Background(), core.StartRequest{Chain: stepsChain(t, steps, hooks...), Input: core.String("go")})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.engine.Enqueue(context.Background(), ex); err != nil {
		t.Fatal(err)
	}
	msgs := f.queue.take()
	if len(msgs) != 1 || msgs[0].Version != ex.Version || msgs[0].ExecutionID != ex.ID {
		t.Fatalf("Enqueue sent %+v, want one message at version %d", msgs, ex.Version)
	}
	return msgs[0]
}

// deliver delivers m on a worker goroutine of its own; crashed tells that
// the worker died at a failpoint instead of returning.
func (f *deliverFixture) deliver(t *testing.T, m core.QueueMessage, opts core.DeliverOptions) (res core.DeliverResult, crashed bool) {
	t.Helper()
	var err error
	returned := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err = f.engine.Deliver(context.Background(), m, opts, nil)
		returned = true
	}()
	<-done
	if !returned {
		return core.DeliverResult{}, true
	}
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	return res, false
}

// drain delivers every message sent until none is left, and returns the
// number of deliveries.
func (f *deliverFixture) drain(t *testing.T, opts core.DeliverOptions) int {
	t.Helper()
	n := 0
	for msgs := f.queue.take(); len(msgs) > 0; msgs = f.queue.take() {
		for _, m := range msgs {
			f.deliver(t, m, opts)
			n++
		}
		if n > 1000 {
			t.Fatal("deliveries never end")
		}
	}
	return n
}

// wantOneHistory checks that the execution succeeded with steps 1..n, each
// task once.
func (f *deliverFixture) wantOneHistory(t *testing.T, id string, n int) {
	t.Helper()
	ex, err := f.store.GetExecution(context.Background(), core.DefaultTenant, id)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Status != core.StatusSucceeded || ex.StepCount != n || ex.Lease.Owner != "" {
		t.Fatalf("execution %s after %d steps, lease %+v; want succeeded after %d, unleased", ex.Status, ex.StepCount, ex.Lease, n)
	}
	steps, err := f.store.ListSteps(context.Background(), core.DefaultTenant, id, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, s := range steps {
		if s.Index != i+1 {
			t.Errorf("step %d has index %d", i+1, s.Index)
		}
		got = append(got, s.TaskID)
	}
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprintf("t%d", i))
	}
	if !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
}

// DurabilitySuite checks the engine's delivery machinery over a store:
// leases, stale and duplicate deliveries, racing workers, step budgets and
// deadlines, crashes at each failpoint, the sweeper, the hop cap and
// cancellation, and lifecycle events published at least once — each step
// committed exactly once, nothing lost. Every
// ExecutionStore adapter runs it; newStore must return an empty store.
func DurabilitySuite(t *testing.T, newStore func(t *testing.T) core.ExecutionStore) {
	t.Run("Deliver", func(t *testing.T) { deliverCases(t, newStore) })
	t.Run("SurvivesCrashes", func(t *testing.T) { crashCases(t, newStore) })
	t.Run("SweepLeavesAloneWhatIsHeldOrDone", func(t *testing.T) { sweepCases(t, newStore) })
	t.Run("Cancel", func(t *testing.T) { cancelCases(t, newStore) })
	t.Run("LongSteps", func(t *testing.T) { longStepCases(t, newStore) })
	t.Run("PoisonWorkEndsVisibly", func(t *testing.T) { poisonCases(t, newStore) })
	t.Run("SweepSkipsWhatTheQueueHolds", func(t *testing.T) { sweepHeldCases(t, newStore) })
	t.Run("LifecycleEvents", func(t *testing.T) { announceCases(t, newStore) })
}

func deliverCases(t *testing.T, newStore func(t *testing.T) core.ExecutionStore) {
	t.Run("RunsToTheEndWithoutBudget", func(t *testing.T) {
		f := newDeliverFixture(t, newStore, "", 0)
		m := f.start(t, 4)
		res, _ := f.deliver(t, m, core.DeliverOptions{})
		if res.Outcome != core.OutcomeRan || res.Steps != 4 || res.Continued {
			t.Errorf("result %+v", res)
		}
		if left := f.queue.take(); len(left) != 0 {
			t.Errorf("a finished execution sent %v", left)
		}
		f.wantOneHistory(t, m.ExecutionID, 4)
	})
	t.Run("StepBudgetHandsOnWithOneContinuation", func(t *testing.T) {
		f := newDeliverFixture(t, newStore, "", 0)
		m := f.start(t, 5)
		res, _ := f.deliver(t, m, core.DeliverOptions{MaxSteps: 2})
		sent := f.queue.take()
		if res.Steps != 2 || !res.Continued || len(sent) != 1 || sent[0].Version != res.Execution.Version {
			t.Fatalf("result %+v, sent %+v", res, sent)
		}
		f.queue.msgs = sent
		if n := f.drain(t, core.DeliverOptions{MaxSteps: 2}); n != 2 {
			t.Errorf("%d more deliveries, want 2 (steps 3-4, then 5)", n)
		}
		f.wantOneHistory(t, m.ExecutionID, 5)
	})
	t.Run("DeadlineHandsOn", func(t *testing.T) {
		f := newDeliverFixture(t, newStore, "", 0)
		m := f.start(t, 2)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		res, err := f.engine.Deliver(ctx, m, core.DeliverOptions{Margin: time.Hour}, nil)
		if err != nil || res.Steps != 0 || !res.Continued {
			t.Fatalf("result %+v, %v: want no step and a continuation", res, err)
		}
	})
	t.Run("DuplicatesAreDropped", func(t *testing.T) {
		f := newDeliverFixture(t, newStore, "", 0)
		m := f.start(t, 3)
		outcomes := map[core.Outcome]int{}
		for range 50 {
			res, _ := f.deliver(t, m, core.DeliverOptions{})
			outcomes[res.Outcome]++
		}
		if outcomes[core.OutcomeRan] != 1 || outcomes[core.OutcomeDone] != 49 {
			t.Errorf("outcomes %v, want one run and 49 dropped", outcomes)
		}
		f.wantOneHistory(t, m.ExecutionID, 3)
	})
	t.Run("ConcurrentDuplicatesRunOnce", func(t *testing.T) {
		f := newDeliverFixture(t, newStore, "", 0)
		f.llm.Delay = 20 * time.Millisecond
		m := f.start(t, 3)
		var wg sync.WaitGroup
		results := make(chan core.DeliverResult, 20)
		for range 20 {
			wg.Go(func() {
				res, err := f.engine.Deliver(context.Background(), m, core.DeliverOptions{}, nil)
				if err != nil {
					t.Errorf("Deliver: %v", err)
				}
				results <- res
			})
		}
		wg.Wait()
		close(results)
		ran := 0
		for r := range results {
			if r.Outcome == core.OutcomeRan {
				ran++
			}
		}
		if ran != 1 {
			t.Errorf("%d deliveries ran, want exactly 1", ran)
		}
		f.wantOneHistory(t, m.ExecutionID, 3)
	})
	t.Run("StaleAndLeasedAreDropped", func(t *testing.T) {
		f := newDeliverFixture(t, newStore, "", 0)
		m := f.start(t, 2)
		old := m
		old.Version--
		if res, _ := f.deliver(t, old, core.DeliverOptions{}); res.Outcome != core.OutcomeStale {
			t.Errorf("old version: %s, want stale", res.Outcome)
		}
		ex, _ := f.store.GetExecution(context.Background(), core.DefaultTenant, m.ExecutionID)
		ex.Lease = core.Lease{Owner: "someone-else", Until: f.clock.now().Add(time.Minute)}
		if err := f.store.CommitExecution(context.Background(), ex, nil); err != nil {
			t.Fatal(err)
		}
		m.Version = ex.Version
		if res, _ := f.deliver(t, m, core.DeliverOptions{}); res.Outcome != core.OutcomeLeased {
			t.Errorf("leased: %s, want leased", res.Outcome)
		}
		gone := m
		gone.ExecutionID = "nope"
		if res, _ := f.deliver(t, gone, core.DeliverOptions{}); res.Outcome != core.OutcomeGone {
			t.Errorf("missing execution: %s, want gone", res.Outcome)
		}
	})
	t.Run("MaxHops", func(t *testing.T) {
		f := newDeliverFixture(t, newStore, "", 2)
		m := f.start(t, 5)
		f.queue.msgs = []core.QueueMessage{m}
		f.drain(t, core.DeliverOptions{MaxSteps: 1})
		ex, _ := f.store.GetExecution(context.Background(), core.DefaultTenant, m.ExecutionID)
		if ex.Status != core.StatusFailed || ex.Error == nil || ex.Error.Reason != core.ReasonMaxHops || ex.StepCount != 3 {
			t.Errorf("execution %s after %d steps, error %+v; want failed with max_hops after 3", ex.Status, ex.StepCount, ex.Error)
		}
	})
}

func crashCases(t *testing.T, newStore func(t *testing.T) core.ExecutionStore) {
	tests := []struct {
		name      string
		failpoint string
		// expire: the crashed worker's lease must run out before anyone
		// else may continue.
		expire bool
		// hookAt is the task (1-4) that calls the effect hook; 0 for none.
		hookAt int
		// metered is how often the meter was told of each step that used
		// the model: a step run again is told again, under its index,
		// which the meter counts once.
		metered []int
	}{
		{"AfterTheStepBeforeItsCommit", core.FailAfterStepBeforeCommit, true, 0, []int{2, 1, 1, 1}},
		{"AfterTheCommitBeforeTheContinuation", core.FailAfterCommitBeforeEnqueue, false, 0, []int{1, 1, 1, 1}},
		{"AfterTheHookCallBeforeItsRecord", core.FailAfterHookBeforeRecord, true, 1, []int{0, 1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newDeliverFixture(t, newStore, tt.failpoint, 0)
			var hooks []int
			if tt.hookAt > 0 {
				hooks = append(hooks, tt.hookAt)
			}
			m := f.start(t, 4, hooks...)
			if _, crashed := f.deliver(t, m, core.DeliverOptions{MaxSteps: 2}); !crashed {
				t.Fatal("the failpoint never fired")
			}
			if sent := f.queue.take(); len(sent) != 0 {
				t.Fatalf("the dead worker sent %v", sent)
			}
			// The queue redelivers the message the worker died with: it is
			// stale now, because the worker's lease moved the version.
			if res, _ := f.deliver(t, m, core.DeliverOptions{}); res.Outcome != core.OutcomeStale && res.Outcome != core.OutcomeLeased {
				t.Fatalf("redelivery: %s, want it dropped", res.Outcome)
			}
			// The sweeper finds the execution nobody carries on.
			if n, err := f.engine.Sweep(context.Background(), core.DefaultTenant, time.Minute); err != nil || n != 0 {
				t.Fatalf("Sweep before it is stuck = %d, %v; want nothing sent", n, err)
			}
			wait := time.Minute + time.Second
			if tt.expire {
				wait += core.DefaultLeaseTTL
			}
			f.clock.add(wait)
			if n, err := f.engine.Sweep(context.Background(), core.DefaultTenant, time.Minute); err != nil || n != 1 {
				t.Fatalf("Sweep = %d, %v; want the execution sent again", n, err)
			}
			f.drain(t, core.DeliverOptions{MaxSteps: 2})
			f.wantOneHistory(t, m.ExecutionID, 4)
			// The hook ran once per attempt at its step — at least once,
			// here twice — and every time with the step's one key.
			var wantKeys []string
			if tt.hookAt > 0 {
				key := fmt.Sprintf("%s/%d/1", m.ExecutionID, tt.hookAt)
				wantKeys = []string{key, key}
			}
			if got := f.hook.seen(); !slices.Equal(got, wantKeys) {
				t.Errorf("hook calls with keys %q, want %q", got, wantKeys)
			}
			if got := f.meter.counts(4); !slices.Equal(got, tt.metered) {
				t.Errorf("steps metered %v times, want %v", got, tt.metered)
			}
		})
	}
}

func sweepCases(t *testing.T, newStore func(t *testing.T) core.ExecutionStore) {
	f := newDeliverFixture(t, newStore, "", 0)
	done := f.start(t, 1)
	f.deliver(t, done, core.DeliverOptions{})
	held := f.start(t, 1)
	ex, _ := f.store.GetExecution(context.Background(), core.DefaultTenant, held.ExecutionID)
	ex.Lease = core.Lease{Owner: "worker", Until: f.clock.now().Add(time.Hour)}
	if err := f.store.CommitExecution(context.Background(), ex, nil); err != nil {
		t.Fatal(err)
	}
	f.clock.add(10 * time.Minute)
	n, err := f.engine.Sweep(context.Background(), core.DefaultTenant, time.Minute)
	if err != nil || n != 0 {
		t.Errorf("Sweep = %d, %v; want nothing: one is done, one is leased", n, err)
	}
	f.queue.fail = core.Errorf(core.EUNAVAILABLE, "queue down")
	f.clock.add(time.Hour)
	if _, err := f.engine.Sweep(context.Background(), core.DefaultTenant, time.Minute); core.ErrorCode(err) != core.EUNAVAILABLE {
		t.Errorf("Sweep with the queue down: %v, want its error", err)
	}
}

func cancelCases(t *testing.T, newStore func(t *testing.T) core.ExecutionStore) {
	f := newDeliverFixture(t, newStore, "", 0)
	m := f.start(t, 3)
	ex, err := f.engine.Cancel(context.Background(), core.DefaultTenant, m.ExecutionID, "not needed")
	if err != nil || ex.Status != core.StatusCancelled || ex.Error == nil || ex.Error.Reason != core.ReasonCancelled {
		t.Fatalf("Cancel = %+v, %v", ex, err)
	}
	if res, _ := f.deliver(t, m, core.DeliverOptions{}); res.Outcome != core.OutcomeDone {
		t.Errorf("delivery after cancel: %s, want done", res.Outcome)
	}
	if _, err := f.engine.Cancel(context.Background(), core.DefaultTenant, m.ExecutionID, ""); core.ErrorCode(err) != core.ECONFLICT {
		t.Errorf("second cancel: %v, want ECONFLICT", err)
	}
	if _, err := f.engine.Cancel(context.Background(), core.DefaultTenant, "nope", ""); core.ErrorCode(err) != core.ENOTFOUND {
		t.Errorf("cancel of nothing: %v, want ENOTFOUND", err)
	}
}

// longStepCases: a step that outlives the lease keeps it by renewing it,
// and one whose lease is taken meanwhile is not committed.
func longStepCases(t *testing.T, newStore func(t *testing.T) core.ExecutionStore) {
	newEngine := func(f *deliverFixture) *core.Engine {
		return core.NewEngine(core.EngineConfig{Store: f.store, LLM: f.llm, Queue: f.queue, LeaseTTL: 30 * time.Millisecond})
	}
	t.Run("RenewedWhileTheStepRuns", func(t *testing.T) {
		f := newDeliverFixture(t, newStore, "", 0)
		f.engine = newEngine(f)
		f.llm.Delay = 300 * time.Millisecond // ten leases long
		m := f.start(t, 2)
		res, err := f.engine.Deliver(context.Background(), m, core.DeliverOptions{}, nil)
		if err != nil || res.Outcome != core.OutcomeRan || res.Steps != 2 {
			t.Fatalf("Deliver = %+v, %v; want both steps run", res, err)
		}
		// create, lease, two steps: anything beyond is a renewal.
		if res.Execution.Version <= 4 {
			t.Errorf("version %d after two long steps: the lease was never renewed", res.Execution.Version)
		}
		f.wantOneHistory(t, m.ExecutionID, 2)
	})
	t.Run("LostWhileTheStepRuns", func(t *testing.T) {
		f := newDeliverFixture(t, newStore, "", 0)
		f.engine = newEngine(f)
		f.llm.Gate = make(chan struct{}) // never opened: only losing the lease can end this step
		m := f.start(t, 2)
		done := make(chan core.DeliverResult, 1)
		go func() {
			res, err := f.engine.Deliver(context.Background(), m, core.DeliverOptions{}, nil)
			if err != nil {
				t.Errorf("Deliver: %v", err)
			}
			done <- res
		}()
		// Someone else ends the execution while its first step runs.
		deadline := time.Now().Add(10 * time.Second)
		for {
			ex, err := f.store.GetExecution(context.Background(), core.DefaultTenant, m.ExecutionID)
			if err == nil && ex.Lease.Owner != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the delivery never took the lease")
			}
			time.Sleep(time.Millisecond)
		}
		if _, err := f.engine.Cancel(context.Background(), core.DefaultTenant, m.ExecutionID, "taken over"); err != nil {
			t.Fatal(err)
		}
		var res core.DeliverResult
		select {
		case res = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the step still runs: the lost lease did not stop it")
		}
		if res.Outcome != core.OutcomeLeased || res.Steps != 0 {
			t.Errorf("Deliver = %+v; want it dropped without a step", res)
		}
		steps, _ := f.store.ListSteps(context.Background(), core.DefaultTenant, m.ExecutionID, 0, 0)
		ex, _ := f.store.GetExecution(context.Background(), core.DefaultTenant, m.ExecutionID)
		if len(steps) != 0 || ex.Status != core.StatusCancelled {
			t.Errorf("%d steps, status %s; want none committed after the cancel", len(steps), ex.Status)
		}
	})
}

// refusingSteps is a store that refuses every commit carrying a step, as
// a store does for a step record too large for it, while refuse is set.
type refusingSteps struct {
	core.ExecutionStore
	refuse *atomic.Bool
}

func (s refusingSteps) CommitExecution(ctx context.Context, e *core.Execution, step *core.Step) error {
	if step != nil && s.refuse.Load() {
		return core.Errorf(core.EINVALID, "step record too large for the store")
	}
	return s.ExecutionStore.CommitExecution(ctx, e, step)
}

// poisonCases: an execution whose deliveries keep failing ends failed
// with reason dead_letter after MaxFailedDeliveries of them, counted on
// the execution (each delivery is a fresh message from the sweeper).
func poisonCases(t *testing.T, newStore func(t *testing.T) core.ExecutionStore) {
	refuse := &atomic.Bool{}
	refuse.Store(true)
	f := newDeliverFixture(t, func(t *testing.T) core.ExecutionStore { return refusingSteps{newStore(t), refuse} }, "", 0)
	m := f.start(t, 3)
	fail := func(n int) {
		t.Helper()
		for i := 1; i <= n; i++ {
			ex, err := f.store.GetExecution(context.Background(), core.DefaultTenant, m.ExecutionID)
			if err != nil || ex.Status.Final() {
				t.Fatalf("before failed delivery %d: %s, %v", i, ex.Status, err)
			}
			m.Version = ex.Version
			if _, err := f.engine.Deliver(context.Background(), m, core.DeliverOptions{}, nil); err == nil {
				t.Fatalf("delivery %d succeeded; want the store's refusal", i)
			}
		}
	}
	// Failures short of the limit, then progress: the count starts again.
	fail(core.MaxFailedDeliveries - 1)
	refuse.Store(false)
	ex, _ := f.store.GetExecution(context.Background(), core.DefaultTenant, m.ExecutionID)
	m.Version = ex.Version
	if res, err := f.engine.Deliver(context.Background(), m, core.DeliverOptions{MaxSteps: 1}, nil); err != nil || res.Steps != 1 {
		t.Fatalf("a healthy delivery: %+v, %v", res, err)
	}
	f.queue.take()
	refuse.Store(true)
	fail(core.MaxFailedDeliveries - 1)
	if ex, _ := f.store.GetExecution(context.Background(), core.DefaultTenant, m.ExecutionID); ex.Status.Final() {
		t.Fatalf("failed as poison although a step committed in between: %+v", ex.Error)
	}
	// The last allowed failure in a row ends it.
	fail(1)
	ex, _ = f.store.GetExecution(context.Background(), core.DefaultTenant, m.ExecutionID)
	if ex.Status != core.StatusFailed || ex.Error == nil || ex.Error.Reason != core.ReasonDeadLetter || ex.Lease.Owner != "" ||
		!strings.Contains(ex.Error.Message, "too large") {
		t.Errorf("after %d failed deliveries: %s %+v, want failed with reason dead_letter and the cause", core.MaxFailedDeliveries, ex.Status, ex.Error)
	}
}

// holdingQueue is a sentQueue that reports holding what it was sent and
// not yet taken, as the in-process queue does.
type holdingQueue struct{ *sentQueue }

func (q holdingQueue) Holds(tenant, id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range q.msgs {
		if m.Tenant == tenant && m.ExecutionID == id {
			return true
		}
	}
	return false
}

// sweepHeldCases: an execution whose message still waits in the queue
// for a worker is not sent again.
func sweepHeldCases(t *testing.T, newStore func(t *testing.T) core.ExecutionStore) {
	f := newDeliverFixture(t, newStore, "", 0)
	f.engine = core.NewEngine(core.EngineConfig{Store: f.store, LLM: f.llm, Queue: holdingQueue{f.queue}, Now: f.clock.now})
	ex, err := f.engine.Start(context.Background(), core.StartRequest{Chain: stepsChain(t, 1), Input: core.String("go")})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.engine.Enqueue(context.Background(), ex); err != nil {
		t.Fatal(err)
	}
	f.clock.add(time.Hour)
	if n, err := f.engine.Sweep(context.Background(), core.DefaultTenant, time.Minute); err != nil || n != 0 {
		t.Errorf("Sweep = %d, %v; want nothing sent while the queue holds its message", n, err)
	}
	f.queue.take()
	if n, err := f.engine.Sweep(context.Background(), core.DefaultTenant, time.Minute); err != nil || n != 1 {
		t.Errorf("Sweep = %d, %v; want it sent once the queue lost its message", n, err)
	}
}
