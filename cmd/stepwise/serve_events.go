package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/egress"
	"github.com/stepwise-run/stepwise/core/eventing"
	"github.com/stepwise-run/stepwise/core/jsfunc"
	"github.com/stepwise-run/stepwise/core/seal"
	"github.com/stepwise-run/stepwise/functions/ingest"
	"github.com/stepwise-run/stepwise/infra/sqlite"
)

// jsWorkerCommand is the name of the hidden subcommand a function's child
// process runs: serve starts it, nobody else should.
const jsWorkerCommand = "js-worker"

// eventsWiring is what the local server's event platform needs from the
// worker: the queue events go onto, and the engine set once it exists.
type eventsWiring struct {
	execs *eventing.EngineExecutions
	bus   *eventing.Bus
}

// newEvents builds the event bus of `stepwise serve`: events go onto the
// work queue, functions run in child processes of this binary (the
// boundary DESIGN.md asks for between users' code and the server), the
// chain builtins start durable executions.
func newEvents(o *serveOptions, store *sqlite.Store, box *seal.Box, cat *catalog.Catalog, work *worker, log *slog.Logger) (*eventing.Bus, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("events: find this binary to run functions with: %w", err)
	}
	pool := jsfunc.NewPool(jsfunc.PoolConfig{Command: []string{self, jsWorkerCommand}, Size: max(o.functionWorkers, 1), MaxRSS: o.functionMemory})
	execs := &eventing.EngineExecutions{Store: store}
	fns := eventing.NewFunctions(store, nil)
	bus := eventing.NewBus(eventing.Config{
		Store: eventing.NewStore(store, box, nil), Functions: fns,
		Fanout:     eventing.QueueFanout{Queue: work.queue},
		Runner:     eventing.Child{Pool: pool},
		Executions: execs,
		Chains:     cat.GetChain,
		HTTP:       egress.NewClient(egress.Policy{}),
		Logger:     log,
	})
	work.events = &eventsWiring{execs: execs, bus: bus}
	return bus, func() { _ = pool.Close() }, nil
}

// attach gives the chain builtins the engine.
func (w *eventsWiring) attach(e *core.Engine) { w.execs.Engine = e }

// ingestHandler is /ingest on the local server.
func ingestHandler(bus *eventing.Bus, keys *access.Keys, log *slog.Logger) *ingest.Handler {
	cfg := ingest.Config{Bus: bus, Logger: log}
	if keys != nil {
		cfg.Keys = keys
	}
	return ingest.New(cfg)
}

// jsWorker is `stepwise js-worker`: a function child. It bounds its own
// heap (the parent kills it past MaxRSS as well) and serves runs on its
// standard input and output until the parent closes them.
func jsWorker(ctx context.Context) int {
	limitSelf()
	if err := jsfunc.Serve(ctx, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "stepwise js-worker:", err)
		return exitFailed
	}
	return exitOK
}
