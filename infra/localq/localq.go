// Package localq is the in-process queue and worker pool: SQS's local twin.
// It implements core.Queue with the same contract (at-least-once delivery,
// delays, redelivery of failed messages with more attempts, a dead letter
// after too many) so that the engine behaves the same on a laptop as on
// AWS.
//
// Messages live only in memory. When Run ends (or the process dies) the
// messages not yet delivered, delayed or waiting for a retry are dropped:
// the execution store is the truth, and the engine's startup scan and
// sweeper (Engine.Sweep) find the executions those messages would have
// continued and send them again.
//
// A Queue runs one scheduler (one timer waiting for the earliest delayed
// message, in the goroutine that called Run) and a fixed number of
// workers; it never polls. Every goroutine it starts has ended when Run
// returns.
package localq

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
)

// Defaults for the zero Config fields.
const (
	// DefaultWorkers is how many deliveries run at once.
	DefaultWorkers = 4
	// DefaultMaxAttempts matches a typical SQS redrive policy's
	// maxReceiveCount.
	DefaultMaxAttempts = 5
)

// Config configures a Queue. Only Handle is required.
type Config struct {
	// Handle processes one delivery; it is the engine's Deliver locally.
	// Its ctx is Run's: it ends when the queue shuts down, and Run waits
	// for Handle to return. An error or a panic makes the queue deliver the
	// message again after Backoff, up to MaxAttempts deliveries.
	Handle func(ctx context.Context, d core.Delivery) error
	// Workers is how many deliveries run at once (DefaultWorkers if not
	// positive).
	Workers int
	// MaxAttempts is how many deliveries a message gets before it becomes a
	// dead letter (DefaultMaxAttempts if not positive).
	MaxAttempts int
	// Backoff is the wait before redelivering a message whose attempt-th
	// delivery failed (DefaultBackoff if nil).
	Backoff func(attempt int) time.Duration
	// Logger receives retries, panics and dead letters (discarded if nil).
	Logger *slog.Logger
	// Now stamps dead letters (time.Now if nil). Delays and backoffs run on
	// the real clock, because the scheduler waits for them with a timer.
	Now func() time.Time
}

// DeadLetter is a message that failed MaxAttempts deliveries. Like SQS's
// dead-letter queue it keeps the message for an operator to look at; the
// queue never delivers it again.
type DeadLetter struct {
	Message core.QueueMessage
	// Attempts is how many times it was delivered.
	Attempts int
	// Error is the last delivery's error.
	Error string
	// At is when it became a dead letter.
	At time.Time
}

// state is where a Queue is in its one life: messages sent while idle wait
// for Run; a stopped queue has dropped its messages and accepts no more.
type state int

const (
	idle state = iota
	running
	stopped
)

// Queue is an in-process core.Queue with its worker pool. It is safe for
// concurrent use.
type Queue struct {
	handle      func(ctx context.Context, d core.Delivery) error
	workers     int
	maxAttempts int
	backoff     func(attempt int) time.Duration
	log         *slog.Logger
	now         func() time.Time

	// kick wakes the scheduler when a new earliest delayed message may
	// move its timer forward; one pending kick is enough.
	kick chan struct{}

	mu sync.Mutex
	// more is signalled when ready gains an item and broadcast when the
	// queue stops, so idle workers sleep instead of polling.
	more    *sync.Cond
	state   state
	ready   []*item // deliverable now, oldest first
	delayed delays  // deliverable later
	seq     uint64
	dead    []DeadLetter
	// held counts the undelivered messages (ready or delayed) of each
	// execution, for Holds.
	held map[heldKey]int
}

var (
	_ core.Queue       = (*Queue)(nil)
	_ core.QueueHolder = (*Queue)(nil)
)

// heldKey names an execution's work in held.
type heldKey struct{ tenant, execution string }

// New returns an idle Queue: it accepts messages at once and delivers them
// once Run is called.
func New(cfg Config) *Queue {
	q := &Queue{
		handle:      cfg.Handle,
		workers:     cfg.Workers,
		maxAttempts: cfg.MaxAttempts,
		backoff:     cfg.Backoff,
		log:         cfg.Logger,
		now:         cfg.Now,
		kick:        make(chan struct{}, 1),
	}
	if q.workers <= 0 {
		q.workers = DefaultWorkers
	}
	if q.maxAttempts <= 0 {
		q.maxAttempts = DefaultMaxAttempts
	}
	if q.backoff == nil {
		q.backoff = DefaultBackoff
	}
	if q.log == nil {
		q.log = slog.New(slog.DiscardHandler)
	}
	if q.now == nil {
		q.now = time.Now
	}
	q.more = sync.NewCond(&q.mu)
	return q
}

// Send enqueues m, to be delivered no sooner than delay from now, and sets
// its ID if it is empty. It fails, sending nothing, if ctx has ended or
// the queue has stopped.
func (q *Queue) Send(ctx context.Context, m core.QueueMessage, delay time.Duration) error {
	if err := ctx.Err(); err != nil {
		return core.WrapError(core.ETIMEOUT, err, "localq: send %s: %v", m.ExecutionID, err)
	}
	if m.ID == "" {
		m.ID = uuid.Must(uuid.NewV7()).String()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.state == stopped {
		return core.Errorf(core.EUNAVAILABLE, "localq: send %s: queue stopped", m.ExecutionID)
	}
	q.enqueue(core.Delivery{Message: m, Attempts: 1}, delay)
	return nil
}

// enqueue schedules d (whose Attempts is the delivery it will be) after
// delay. q.mu must be held.
func (q *Queue) enqueue(d core.Delivery, delay time.Duration) {
	if q.held == nil {
		q.held = map[heldKey]int{}
	}
	q.held[heldKey{d.Message.Tenant, d.Message.ExecutionID}]++
	q.seq++
	it := &item{d: d, seq: q.seq}
	if delay <= 0 {
		q.ready = append(q.ready, it)
		q.more.Signal()
		return
	}
	it.due = time.Now().Add(delay)
	heap.Push(&q.delayed, it)
	if q.delayed[0] == it {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}

// Pending returns how many messages wait in memory for a delivery: due
// now, delayed, or waiting for a retry. Deliveries in progress are not
// counted.
func (q *Queue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ready) + q.delayed.Len()
}

// DeadLetters returns the messages that failed MaxAttempts deliveries,
// oldest first.
func (q *Queue) DeadLetters() []DeadLetter {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]DeadLetter(nil), q.dead...)
}

// Run delivers messages to Handle with the configured workers until ctx
// ends, then waits for the deliveries in progress to return, drops the
// messages still waiting (see the package comment) and returns nil. A
// Queue runs once: calling Run again fails with ECONFLICT, and Send fails
// once Run has returned. Run fails with EINVALID if Config.Handle is nil.
func (q *Queue) Run(ctx context.Context) error {
	if q.handle == nil {
		return core.Errorf(core.EINVALID, "handle: required")
	}
	q.mu.Lock()
	if q.state != idle {
		q.mu.Unlock()
		return core.Errorf(core.ECONFLICT, "localq: Run called more than once")
	}
	q.state = running
	q.mu.Unlock()

	var wg sync.WaitGroup
	for range q.workers {
		wg.Go(func() { q.work(ctx) })
	}
	q.schedule(ctx)
	wg.Wait()

	q.mu.Lock()
	dropped := len(q.ready) + q.delayed.Len()
	q.ready, q.delayed, q.held = nil, nil, nil
	q.mu.Unlock()
	q.log.Info("localq: stopped", "dropped", dropped)
	return nil
}

// schedule moves delayed messages to the ready list as they fall due,
// sleeping on one timer set for the earliest, until ctx ends; then it
// stops the queue and wakes the workers so that they exit.
func (q *Queue) schedule(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		now := time.Now()
		for _, it := range q.delayed.popDue(now) {
			q.ready = append(q.ready, it)
			q.more.Signal()
		}
		next := time.Duration(-1)
		if q.delayed.Len() > 0 {
			next = q.delayed[0].due.Sub(now)
		}
		q.mu.Unlock()
		if next >= 0 {
			timer.Reset(next)
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			q.mu.Lock()
			q.state = stopped
			q.more.Broadcast()
			q.mu.Unlock()
			return
		case <-timer.C:
		case <-q.kick:
		}
	}
}

// work delivers ready messages one at a time until the queue stops.
func (q *Queue) work(ctx context.Context) {
	for {
		it, ok := q.take()
		if !ok {
			return
		}
		q.settle(ctx, it, q.call(ctx, it.d))
	}
}

// take waits for the oldest ready message; ok is false once the queue has
// stopped.
func (q *Queue) take() (it *item, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ready) == 0 && q.state != stopped {
		q.more.Wait()
	}
	if q.state == stopped {
		return nil, false
	}
	it = q.ready[0]
	q.ready[0] = nil
	q.ready = q.ready[1:]
	k := heldKey{it.d.Message.Tenant, it.d.Message.ExecutionID}
	if q.held[k]--; q.held[k] <= 0 {
		delete(q.held, k)
	}
	return it, true
}

// Holds reports whether the queue holds an undelivered message (ready,
// delayed, or waiting for a retry) for the execution; a delivery in
// progress does not count, nor does anything after Run has returned (what
// was left is dropped). A retry of a message that has gone stale counts
// until a worker takes it, which delays a sweep by at most its backoff.
// It implements core.QueueHolder.
func (q *Queue) Holds(tenant, executionID string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.held[heldKey{tenant, executionID}] > 0
}

// call runs Handle, turning a panic into an error so that one bad delivery
// neither kills the process nor loses its worker.
func (q *Queue) call(ctx context.Context, d core.Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = core.Errorf(core.EINTERNAL, "localq: handler panicked: %v", r)
			q.log.Error("localq: handler panicked", "id", d.Message.ID,
				"execution", d.Message.ExecutionID, "attempt", d.Attempts,
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	return q.handle(ctx, d)
}

// settle acknowledges a delivery that succeeded and schedules a failed one
// again, or makes it a dead letter after its last attempt. A delivery that
// ends with the queue is dropped like every other waiting message.
func (q *Queue) settle(ctx context.Context, it *item, err error) {
	if err == nil {
		return
	}
	m := it.d.Message
	if ctx.Err() != nil {
		q.log.Debug("localq: delivery interrupted by shutdown", "id", m.ID,
			"execution", m.ExecutionID, "attempt", it.d.Attempts, "err", err)
		return
	}
	if it.d.Attempts >= q.maxAttempts {
		dl := DeadLetter{Message: m, Attempts: it.d.Attempts, Error: err.Error(), At: q.now()}
		q.log.Error("localq: dead letter", "id", m.ID, "execution", m.ExecutionID,
			"attempts", it.d.Attempts, "err", err)
		q.mu.Lock()
		q.dead = append(q.dead, dl)
		q.mu.Unlock()
		return
	}
	delay := q.backoff(it.d.Attempts)
	q.log.Warn("localq: delivery failed, will retry", "id", m.ID, "execution", m.ExecutionID,
		"attempt", it.d.Attempts, "retry_in", delay, "err", err)
	q.mu.Lock()
	q.enqueue(core.Delivery{Message: m, Attempts: it.d.Attempts + 1}, delay)
	q.mu.Unlock()
}
