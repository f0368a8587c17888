package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/fleet"
	"github.com/stepwise-run/stepwise/core/hooks"
	"github.com/stepwise-run/stepwise/core/hooks/remote"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/core/seal"
	"github.com/stepwise-run/stepwise/functions/api"
	"github.com/stepwise-run/stepwise/functions/ingest"
	"github.com/stepwise-run/stepwise/functions/openai"
	"github.com/stepwise-run/stepwise/infra/sqlite"
)

// serveCommand is `stepwise serve`: every function of the layout on one
// port, over the SQLite store.
func serveCommand(ctx context.Context, args []string, e env) int {
	o, err := parseServeFlags(args, e)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "stepwise: %v\n", err)
		return exitUsage
	}
	level, _ := logLevel(o.logLevel)
	log := slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	o.failpoint = failpointFromEnv(e, log)
	if err := serve(ctx, o, log, nil); err != nil {
		log.Error("stepwise serve stopped", "error", err.Error())
		return exitFailed
	}
	return exitOK
}

// serve runs the server until ctx ends, then shuts it down gracefully.
// ready, if not nil, receives the listening address once requests are
// served.
func serve(ctx context.Context, o *serveOptions, log *slog.Logger, ready func(addr string)) error {
	key, err := secretKey(o)
	if err != nil {
		return err
	}
	box, err := seal.New(key)
	if err != nil {
		return err
	}
	store, err := sqlite.Open(ctx, o.dbPath)
	if err != nil {
		return err
	}
	defer store.Close()

	keys, err := setUpKeys(ctx, o, store, log)
	if err != nil {
		return err
	}
	var keySource meter.KeySource // an untyped nil without keys
	if keys != nil {
		keySource = keys
	}
	usage := meter.New(store, store, keySource, nil)
	cat := catalog.New(catalog.Config{Store: store, Sealer: box, Defaults: o.defaults, ProviderURLs: o.providerURLs})
	if err := cat.Bootstrap(ctx, core.DefaultTenant, catalog.BootstrapConfig{OllamaURL: o.ollamaURL, OllamaName: o.ollamaName}); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	fleets := fleet.NewTenants(fleet.Config{
		Source:       cat,
		NewProvider:  fleet.NewProvider,
		Policy:       o.policy,
		SyncInterval: o.syncInterval,
		Logger:       log,
	})
	if err := fleets.For(core.DefaultTenant).Reload(ctx); err != nil {
		return fmt.Errorf("load backends: %w", err)
	}
	tools, remoteHooks := remote.NewRegistry(remote.SourceConfig{Store: store, Sealer: box},
		hooks.Echo(), hooks.Print(), hooks.Webhook(hooks.WebhookConfig{AllowPrivate: o.webhookAllowPrivate}))
	// Open MCP sessions end with the server.
	defer func() { _ = remoteHooks.Close() }()
	work := newWorker(o, log)
	evBus, closeEvents, err := newEvents(o, store, box, cat, work, log)
	if err != nil {
		return err
	}
	defer closeEvents()
	engine := core.NewEngine(core.EngineConfig{
		Store: store, LLM: fleets.LLM(), Tools: tools, Queue: work.queue,
		LeaseTTL: o.leaseTTL, Failpoint: o.failpoint, Meter: usage,
		// Lifecycle events are events like any other: triggers see them.
		Publisher: evBus,
	})
	work.attach(engine, keys)
	work.events.attach(engine)
	handler := api.New(api.Config{
		Catalog:      cat,
		Fleets:       func(tenant string) api.Fleet { return fleets.For(tenant) },
		Engine:       engine,
		Executions:   store,
		SyncTimeout:  o.syncTimeout,
		Hooks:        tools,
		Remote:       remoteHooks,
		Version:      version,
		NodeID:       uuid.NewString(),
		Logger:       log,
		MaxBodyBytes: o.maxBody,
		Keys:         keys,
		Meter:        usage,
		Events:       evBus,
	})

	oa := openai.New(openai.Config{
		Catalog:    cat,
		Models:     func(tenant string) openai.Models { return fleets.For(tenant) },
		Engine:     engine,
		Executions: store,
		Records:    store,
		Logger:     log,
		Keys:       keys,
		Meter:      usage,
	})

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	gate := &requestGate{}
	srv := &http.Server{
		Handler:           gate.wrap(ingest.Mount(ingestHandler(evBus, keys, log), openai.Mount(oa, handler))),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       o.readTimeout,
		WriteTimeout:      o.writeTimeout,
		IdleTimeout:       o.idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}

	// Event streams end when shutdown begins; they would otherwise hold it
	// for the whole grace period.
	srv.RegisterOnShutdown(handler.Close)
	srv.RegisterOnShutdown(oa.Close)

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { fleets.Run(bg) })
	wg.Go(func() { work.run(bg) })

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("stepwise serving", "addr", ln.Addr().String(), "db", o.dbPath, "version", version, "routing_policy", o.policy)
	if ready != nil {
		ready(ln.Addr().String())
	}

	select {
	case err = <-served:
	case <-ctx.Done():
		log.Info("shutting down", "grace", o.shutdownTimeout.String())
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.shutdownTimeout)
		err = srv.Shutdown(sctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			// Cutting the connections cancels the requests' contexts: a
			// running execution stops without committing its step in
			// flight, which runs again when the execution is resumed.
			log.Warn("requests still running after the grace period; cutting their connections")
			err = srv.Close()
		}
		<-served
	}
	gate.closeAndWait()
	stopBG()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if err == nil {
		log.Info("stepwise stopped")
	}
	return err
}

// requestGate counts the requests being handled, so that the store is
// closed only after the last one is done with it, even when shutdown has
// to cut connections. Once closed it turns late requests away (a
// connection that had read its request before being cut) instead of
// letting them reach a closing store.
type requestGate struct {
	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

func (g *requestGate) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"message":"the server is shutting down","type":"api_error","code":"unavailable","param":null}}`))
			return
		}
		g.inflight.Add(1)
		g.mu.Unlock()
		defer g.inflight.Done()
		h.ServeHTTP(w, r)
	})
}

// closeAndWait turns new requests away and waits for those in flight.
func (g *requestGate) closeAndWait() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.inflight.Wait()
}

// logLevel parses a -log-level value.
func logLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return l, fmt.Errorf("-log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
