package core_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/infra/mem"
)

func TestQueueMessageCodec(t *testing.T) {
	m := core.QueueMessage{ID: "m1", Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex", Version: 7}
	b, err := core.EncodeQueueMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := core.DecodeQueueMessage(b)
	if err != nil || got != m {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, m)
	}
	for name, body := range map[string]string{
		"NotJSON":     `hello`,
		"UnknownKind": `{"kind":"explode","tenant":"a","execution_id":"e"}`,
		"NoExecution": `{"kind":"continue","tenant":"a"}`,
		"NoTenant":    `{"kind":"continue","execution_id":"e"}`,
		"Trailing":    `{"kind":"continue","tenant":"a","execution_id":"e"} {}`,
		"EventBridge": `{"version":"0","id":"6a7e8feb","detail-type":"execution.finished","source":"stepwise","detail":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := core.DecodeQueueMessage([]byte(body)); core.ErrorCode(err) != core.EINVALID {
				t.Errorf("DecodeQueueMessage(%s) = %v, want EINVALID", body, err)
			}
		})
	}
}

// TestRelease: a delivery's lease is cleared for its owner only, at the
// version the store has, whatever version the owner last saw.
func TestRelease(t *testing.T) {
	ctx := context.Background()
	h := newHarness(newLLM())
	ex, err := h.engine.Start(ctx, core.StartRequest{Chain: mustChain(t, "id: c\ntasks:\n  - {id: a, handler: noop}\n"), Input: core.String("x")})
	if err != nil {
		t.Fatal(err)
	}
	ex.Lease = core.Lease{Owner: "inline-1", Until: time.Now().Add(time.Hour)}
	if err := h.store.CommitExecution(ctx, ex, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, owner string
		wantHeld    bool
	}{
		{"another owner leaves it", "inline-2", true},
		{"no owner leaves it", "", true},
		{"its owner clears it", "inline-1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := h.engine.Release(ctx, ex.Tenant, ex.ID, tt.owner)
			if err != nil {
				t.Fatal(err)
			}
			stored, _ := h.store.GetExecution(ctx, ex.Tenant, ex.ID)
			if held := stored.Lease.Held(time.Now()); held != tt.wantHeld || got.Version != stored.Version {
				t.Errorf("held %v (want %v), returned version %d, stored %d", held, tt.wantHeld, got.Version, stored.Version)
			}
		})
	}
}

// sentQueue records what is sent to it.
type sentQueue struct {
	sent   []core.QueueMessage
	delays []time.Duration
}

func (q *sentQueue) Send(_ context.Context, m core.QueueMessage, delay time.Duration) error {
	q.sent, q.delays = append(q.sent, m), append(q.delays, delay)
	return nil
}

// TestRecover: an execution leased by another process is sent to run
// when its lease ends; one leased by this process, one not leased, and
// one that ended are left alone.
func TestRecover(t *testing.T) {
	ctx := context.Background()
	q := &sentQueue{}
	store := mem.New()
	now := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	engine := core.NewEngine(core.EngineConfig{Store: store, Queue: q, Now: func() time.Time { return now }})
	chain := mustChain(t, "id: c\ntasks:\n  - {id: a, handler: noop}\n")
	leased := func(owner string, until time.Duration, status core.Status) *core.Execution {
		ex, err := engine.Start(ctx, core.StartRequest{Chain: chain, Input: core.String("x")})
		if err != nil {
			t.Fatal(err)
		}
		ex.Status = status
		if owner != "" {
			ex.Lease = core.Lease{Owner: owner, Until: now.Add(until)}
		}
		if err := store.CommitExecution(ctx, ex, nil); err != nil {
			t.Fatal(err)
		}
		return ex
	}
	dead := leased("old-process/d1", 3*time.Second, core.StatusRunning)
	leased("this-process/d2", 3*time.Second, core.StatusRunning)
	leased("", 0, core.StatusQueued)
	leased("old-process/d3", -time.Second, core.StatusRunning) // lapsed: the sweep's
	leased("old-process/d4", time.Hour, core.StatusSucceeded)
	long := leased("old-process/d5", time.Hour, core.StatusRunning)
	n, err := engine.Recover(ctx, core.DefaultTenant, func(owner string) bool { return strings.HasPrefix(owner, "this-process/") })
	if err != nil || n != 2 || len(q.sent) != 2 {
		t.Fatalf("Recover = %d, %v; sent %+v", n, err, q.sent)
	}
	got := map[string]time.Duration{}
	for i, m := range q.sent {
		got[m.ExecutionID] = q.delays[i]
	}
	if d, ok := got[dead.ID]; !ok || d < 3*time.Second || d > 4*time.Second {
		t.Errorf("the dead process's execution was sent with delay %v (%v), want its lease's 3 s and a hair", d, ok)
	}
	if d := got[long.ID]; d != 15*time.Minute {
		t.Errorf("a lease of an hour: delay %v, want the queue's longest, 15m", d)
	}
}
