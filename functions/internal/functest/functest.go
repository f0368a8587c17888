// Package functest holds what the functions' tests share: an engine whose
// continuations run on an in-process queue, as `stepwise serve` runs them,
// and a log sink to read what a server logged. Only _test.go files import
// it.
package functest

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/infra/localq"
)

// StartWorkers returns an engine made of cfg whose continuations go to an
// in-process queue, and runs the queue's workers, which deliver them to
// the engine, until the test ends.
func StartWorkers(t testing.TB, cfg core.EngineConfig) *core.Engine {
	t.Helper()
	var engine *core.Engine
	q := localq.New(localq.Config{Handle: func(ctx context.Context, d core.Delivery) error {
		_, err := engine.Deliver(ctx, d.Message, core.DeliverOptions{}, nil)
		return err
	}})
	cfg.Queue = q
	engine = core.NewEngine(cfg)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("queue: %v", err)
		}
	})
	return engine
}

// StepMeter is m as the engine's meter: none when m is nil.
func StepMeter(m *meter.Meter) core.StepMeter {
	if m == nil {
		return nil
	}
	return m
}

// Logs is a log sink safe for a server's goroutines, read by the test.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
