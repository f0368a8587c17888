package localq_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/coretest"
	"github.com/stepwise-run/stepwise/infra/localq"
)

// waitBound bounds the waits below so that a broken queue fails the test
// instead of hanging it; no test asserts on elapsed time.
const waitBound = 30 * time.Second

// tinyBackoff keeps retries quick without making them immediate, so that
// they still go through the delay timer.
func tinyBackoff(int) time.Duration { return time.Millisecond }

// settled is a delivery handed to the test and the channel its verdict
// goes back on.
type settled struct {
	d    core.Delivery
	done chan error
}

func TestQueueSuite(t *testing.T) {
	coretest.QueueSuite(t, func(t *testing.T) coretest.QueueHarness {
		deliveries := make(chan settled)
		q := localq.New(localq.Config{
			Backoff: tinyBackoff,
			// Handle holds each delivery until the test settles it, as a
			// worker would hold an SQS message until it deletes it.
			Handle: func(ctx context.Context, d core.Delivery) error {
				s := settled{d: d, done: make(chan error, 1)}
				select {
				case deliveries <- s:
				case <-ctx.Done():
					return ctx.Err()
				}
				select {
				case err := <-s.done:
					return err
				case <-ctx.Done():
					return ctx.Err()
				}
			},
		})
		start(t, q)
		return coretest.QueueHarness{
			Queue: q,
			Receive: func(ctx context.Context) (core.Delivery, func(error), error) {
				select {
				case s := <-deliveries:
					return s.d, func(err error) { s.done <- err }, nil
				case <-ctx.Done():
					return core.Delivery{}, nil, ctx.Err()
				}
			},
		}
	})
}

// start runs q until the test ends and checks that Run returned cleanly.
func start(t *testing.T, q *localq.Queue) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitFor waits until cond holds, failing the test if it never does.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv receives from c, failing the test if nothing comes.
func recv[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(waitBound):
	}
	t.Fatal("gave up waiting for a delivery")
	var zero T
	return zero
}

func message(id string) core.QueueMessage {
	return core.QueueMessage{ID: id, Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-" + id, Version: 1}
}

func TestRetries(t *testing.T) {
	var mu sync.Mutex
	var backoffs []int
	attempts := make(chan int, 10)
	q := localq.New(localq.Config{
		Backoff: func(attempt int) time.Duration {
			mu.Lock()
			defer mu.Unlock()
			backoffs = append(backoffs, attempt)
			return time.Millisecond
		},
		Handle: func(_ context.Context, d core.Delivery) error {
			attempts <- d.Attempts
			if d.Attempts < 3 {
				return fmt.Errorf("attempt %d failed", d.Attempts)
			}
			return nil
		},
	})
	start(t, q)
	if err := q.Send(context.Background(), message("m1"), 0); err != nil {
		t.Fatal(err)
	}
	var got []int
	for range 3 {
		got = append(got, recv(t, attempts))
	}
	if !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("delivered attempts %v, want [1 2 3]", got)
	}
	mu.Lock()
	if !slices.Equal(backoffs, []int{1, 2}) {
		t.Errorf("Backoff called for attempts %v, want [1 2]", backoffs)
	}
	mu.Unlock()
	if dl := q.DeadLetters(); len(dl) != 0 {
		t.Errorf("DeadLetters = %+v, want none: the third attempt succeeded", dl)
	}
}

func TestDeadLetters(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		name    string
		handle  func(d core.Delivery) error
		wantErr string
	}{
		{
			name:    "KeepsTheLastError",
			handle:  func(d core.Delivery) error { return fmt.Errorf("boom %d", d.Attempts) },
			wantErr: "boom 3",
		},
		{
			name:    "PanickingHandler",
			handle:  func(d core.Delivery) error { panic(fmt.Sprintf("kaboom %d", d.Attempts)) },
			wantErr: "kaboom 3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			calls := map[string]int{}
			ok := make(chan string, 1)
			q := localq.New(localq.Config{
				Workers:     1, // the one worker must survive a panic to serve "after"
				MaxAttempts: 3,
				Backoff:     tinyBackoff,
				Now:         func() time.Time { return at },
				Handle: func(_ context.Context, d core.Delivery) error {
					mu.Lock()
					calls[d.Message.ID]++
					mu.Unlock()
					if d.Message.ID == "after" {
						ok <- d.Message.ID
						return nil
					}
					return tt.handle(d)
				},
			})
			start(t, q)
			m := message("bad")
			if err := q.Send(context.Background(), m, 0); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a dead letter", func() bool { return len(q.DeadLetters()) > 0 })
			dl := q.DeadLetters()
			if len(dl) != 1 {
				t.Fatalf("DeadLetters = %+v, want one", dl)
			}
			if dl[0].Message != m || dl[0].Attempts != 3 || !dl[0].At.Equal(at) {
				t.Errorf("dead letter = %+v, want message %+v after 3 attempts at %v", dl[0], m, at)
			}
			if !strings.Contains(dl[0].Error, tt.wantErr) {
				t.Errorf("dead letter error = %q, want it to contain %q", dl[0].Error, tt.wantErr)
			}
			if n := q.Pending(); n != 0 {
				t.Errorf("Pending = %d after the dead letter, want 0", n)
			}
			if err := q.Send(context.Background(), message("after"), 0); err != nil {
				t.Fatal(err)
			}
			recv(t, ok)
			mu.Lock()
			defer mu.Unlock()
			if calls["bad"] != 3 {
				t.Errorf("bad message delivered %d times, want 3", calls["bad"])
			}
		})
	}
}

func TestSentBeforeRunIsDeliveredByRun(t *testing.T) {
	got := make(chan core.QueueMessage, 1)
	q := localq.New(localq.Config{Handle: func(_ context.Context, d core.Delivery) error {
		got <- d.Message
		return nil
	}})
	m := message("early")
	if err := q.Send(context.Background(), m, 0); err != nil {
		t.Fatal(err)
	}
	if n := q.Pending(); n != 1 {
		t.Errorf("Pending before Run = %d, want 1", n)
	}
	start(t, q)
	if d := recv(t, got); d != m {
		t.Errorf("delivered %+v, want %+v", d, m)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	entered := make(chan struct{}, 8)
	q := localq.New(localq.Config{
		Workers: 8,
		// Handle blocks until shutdown and then fails, which must not
		// count as a failed attempt.
		Handle: func(ctx context.Context, _ core.Delivery) error {
			entered <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- q.Run(ctx) }()
	for i := range 3 {
		if err := q.Send(ctx, message(fmt.Sprintf("now%d", i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Send(ctx, message("later"), time.Hour); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		recv(t, entered)
	}
	if n := q.Pending(); n != 1 {
		t.Errorf("Pending = %d with three deliveries in progress and one delayed, want 1", n)
	}

	cancel()
	if err := recv(t, errc); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
	if n := q.Pending(); n != 0 {
		t.Errorf("Pending after Run = %d, want 0 (dropped)", n)
	}
	if dl := q.DeadLetters(); len(dl) != 0 {
		t.Errorf("DeadLetters = %+v, want none: shutdown is not a failure", dl)
	}
	err := q.Send(context.Background(), message("late"), 0)
	if code := core.ErrorCode(err); code != core.EUNAVAILABLE {
		t.Errorf("Send after Run = %v (code %q), want %q", err, code, core.EUNAVAILABLE)
	}
	if code := core.ErrorCode(q.Run(context.Background())); code != core.ECONFLICT {
		t.Errorf("second Run code = %q, want %q", code, core.ECONFLICT)
	}
	waitFor(t, "the queue's goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

func TestRunWithoutHandle(t *testing.T) {
	err := localq.New(localq.Config{}).Run(context.Background())
	if code := core.ErrorCode(err); code != core.EINVALID || !strings.Contains(err.Error(), "handle") {
		t.Errorf("Run without Handle = %v (code %q), want %q naming handle", err, code, core.EINVALID)
	}
}

func TestSendWithCancelledContext(t *testing.T) {
	q := localq.New(localq.Config{Handle: func(context.Context, core.Delivery) error { return nil }})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := q.Send(ctx, message("m"), 0)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Send = %v, want it to wrap context.Canceled", err)
	}
	if n := q.Pending(); n != 0 {
		t.Errorf("Pending = %d, want 0", n)
	}
}

func TestDefaultBackoff(t *testing.T) {
	tests := []struct {
		attempt int
		lo, hi  time.Duration
	}{
		{attempt: 0, lo: 500 * time.Millisecond, hi: time.Second},
		{attempt: 1, lo: 500 * time.Millisecond, hi: time.Second},
		{attempt: 2, lo: time.Second, hi: 2 * time.Second},
		{attempt: 3, lo: 2 * time.Second, hi: 4 * time.Second},
		{attempt: 6, lo: 16 * time.Second, hi: 32 * time.Second},
		{attempt: 7, lo: 30 * time.Second, hi: time.Minute},
		{attempt: 100, lo: 30 * time.Second, hi: time.Minute},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("attempt", tt.attempt), func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 50 {
				d := localq.DefaultBackoff(tt.attempt)
				if d < tt.lo || d > tt.hi {
					t.Fatalf("DefaultBackoff(%d) = %v, want within [%v, %v]", tt.attempt, d, tt.lo, tt.hi)
				}
				seen[d] = true
			}
			if len(seen) < 2 {
				t.Errorf("DefaultBackoff(%d) returned %v every time, want jitter", tt.attempt, seen)
			}
		})
	}
}

func TestHolds(t *testing.T) {
	release := make(chan struct{})
	q := localq.New(localq.Config{Workers: 1, Handle: func(ctx context.Context, d core.Delivery) error {
		<-release
		return nil
	}})
	ctx := context.Background()
	m := func(ex string) core.QueueMessage {
		return core.QueueMessage{Kind: core.KindContinue, Tenant: "t", ExecutionID: ex}
	}
	if err := q.Send(ctx, m("a"), 0); err != nil {
		t.Fatal(err)
	}
	if err := q.Send(ctx, m("b"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if !q.Holds("t", "a") || !q.Holds("t", "b") || q.Holds("t", "c") || q.Holds("other", "a") {
		t.Fatal("Holds does not see the ready and the delayed message by tenant and execution")
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- q.Run(runCtx) }()
	// Once the worker takes a's message, the queue no longer holds it.
	deadline := time.Now().Add(10 * time.Second)
	for q.Holds("t", "a") {
		if time.Now().After(deadline) {
			t.Fatal("the worker never took the message")
		}
		time.Sleep(time.Millisecond)
	}
	if !q.Holds("t", "b") {
		t.Error("the delayed message is no longer held")
	}
	close(release)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if q.Holds("t", "b") {
		t.Error("a message dropped when Run returned is still held")
	}
}
