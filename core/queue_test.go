package core_test

import (
	"context"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
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
