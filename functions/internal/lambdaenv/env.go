// Package lambdaenv wires the AWS Lambda entry points of stepwise: it reads
// their environment (the only configuration they have; docs/aws.md lists
// it), and builds what `stepwise serve` builds over SQLite and the local
// queue, over DynamoDB (infra/awsdynamo) and SQS (infra/awssqs) instead:
// the sealer, the catalog (bootstrapped as serve does), the fleet of
// backends, the engine whose queue is SQS, and from them the API handler
// and the worker.
//
// An Env is built once per cold start and reused by every invocation of
// that execution environment, so the AWS clients keep their HTTP
// connections alive between invocations. Lambda freezes the process
// between invocations, so nothing runs in the background: the fleet is
// not Run. Instead it is reloaded at cold start, after every catalog write
// made through the API (as serve does), and at the start of an invocation
// when its last reload is more than a minute old, which is how a warm
// function sees the backends another function's instance added. Backends'
// model downloads (Ollama pulls) are not started from Lambda.
//
// The environment is read only by the entry points (main), which pass
// os.Getenv to Load; this package takes it as a parameter.
package lambdaenv

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/egress"
	"github.com/stepwise-run/stepwise/core/eventing"
	"github.com/stepwise-run/stepwise/core/fleet"
	"github.com/stepwise-run/stepwise/core/hooks"
	"github.com/stepwise-run/stepwise/core/hooks/remote"
	"github.com/stepwise-run/stepwise/core/jsfunc"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/core/seal"
	"github.com/stepwise-run/stepwise/functions/api"
	"github.com/stepwise-run/stepwise/functions/ingest"
	"github.com/stepwise-run/stepwise/functions/openai"
	"github.com/stepwise-run/stepwise/functions/worker"
	"github.com/stepwise-run/stepwise/infra/awsbus"
	"github.com/stepwise-run/stepwise/infra/awsdynamo"
	"github.com/stepwise-run/stepwise/infra/awss3"
	"github.com/stepwise-run/stepwise/infra/awssqs"
)

// Version is what /version reports for the Lambda functions.
const Version = "lambda"

// staleAfter is the age after which an invocation reloads the fleet: the
// same minute `stepwise serve`'s background loop waits before it picks up
// changes made by other processes.
const staleAfter = time.Minute

// Env is what every invocation of a function's execution environment
// shares. It is safe for concurrent use.
type Env struct {
	// Settings are the parsed environment.
	Settings Settings
	// Logger writes JSON lines on stderr, which Lambda sends to CloudWatch.
	Logger *slog.Logger
	// Store is the DynamoDB store: catalog records, executions, steps.
	Store *awsdynamo.Store
	// Queue sends continuations to the SQS work queue.
	Queue *awssqs.Queue
	// Bus publishes executions' lifecycle events on EventBridge
	// (STEPWISE_EVENT_BUS); nil when that is unset, and then the engine
	// publishes none.
	Bus *awsbus.Bus
	// Catalog reads and writes backends, models, groups, chains and keys.
	Catalog *catalog.Catalog
	// Fleets route model calls across each tenant's backends.
	Fleets *fleet.Tenants
	// Tools are the hooks chains can call (local_exec never on Lambda).
	Tools *hooks.Registry
	// Remote serves the tenants' remote hooks, part of Tools.
	Remote *remote.Source
	// Engine runs executions, committing to Store and continuing on Queue.
	Engine *core.Engine
	// Keys check the API key of every request; nil leaves the routes
	// open (no STEPWISE_AUTH=on and no key in the table).
	Keys *access.Keys
	// Meter holds model calls to their limits and keeps the ledger, for
	// the API and the OpenAI routes alike (one cache of prices and limits).
	Meter *meter.Meter
	// Events ingests webhooks and runs triggers. Events go to EventBridge
	// when STEPWISE_EVENT_BUS is set (its rule feeds the work queue), else
	// straight onto the work queue; the worker runs their functions in
	// its own invocation, one event per batch.
	Events *eventing.Bus

	mu       sync.Mutex
	reloaded time.Time
}

// Load reads the environment through getenv, builds the AWS clients (with
// the SDK's usual credential and region chain; awsOpts are added to it),
// reads the secret key from Secrets Manager when STEPWISE_SECRET_KEY_ARN
// names its secret, bootstraps the default tenant's catalog as `stepwise
// serve` does and loads the fleet. It fails with an error naming the
// variable at fault (and the secret, for one that cannot be read or holds
// no key), or with the AWS error of the bootstrap (a missing table, no
// permission).
func Load(ctx context.Context, getenv func(string) string, awsOpts ...func(*config.LoadOptions) error) (*Env, error) {
	s, err := ParseSettings(getenv)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: s.LogLevel}))
	if s.Endpoint != "" {
		awsOpts = append(awsOpts, config.WithBaseEndpoint(s.Endpoint))
	}
	cfg, err := config.LoadDefaultConfig(ctx, awsOpts...)
	if err != nil {
		return nil, core.WrapError(core.EINVALID, err, "AWS configuration")
	}
	if s.SecretKeyARN != "" {
		// Every client shares cfg, so AWS_ENDPOINT_URL reaches this one too.
		if s.SecretKey, err = readSecretKey(ctx, secretsmanager.NewFromConfig(cfg), s.SecretKeyARN); err != nil {
			return nil, err
		}
	}
	e := &Env{Settings: s, Logger: log}
	e.Store = awsdynamo.New(dynamodb.NewFromConfig(cfg), s.Table)
	if s.Bucket != "" {
		// Step outputs above DynamoDB's item size go to S3 under their
		// content hash; every function reading the table needs this.
		// Emulators (LocalStack, moto) need path-style addressing.
		pathStyle := func(o *s3.Options) { o.UsePathStyle = s.Endpoint != "" }
		e.Store = e.Store.WithBlobs(awss3.New(s3.NewFromConfig(cfg, pathStyle), s.Bucket), 0)
	}
	if e.Keys, err = setUpKeys(ctx, s, e.Store, log); err != nil {
		return nil, err
	}
	var keySource meter.KeySource // an untyped nil without keys
	if e.Keys != nil {
		keySource = e.Keys
	}
	e.Meter = meter.New(e.Store, e.Store, keySource, nil)
	e.Queue = awssqs.New(sqs.NewFromConfig(cfg), s.QueueURL)
	// An untyped nil publisher keeps the engine from publishing.
	var publisher core.Publisher
	if s.EventBus != "" {
		e.Bus = awsbus.New(eventbridge.NewFromConfig(cfg), s.EventBus)
		publisher = e.Bus
	}

	// An untyped nil keeps the catalog's own "no sealer" error when no key
	// is configured.
	var sealer catalog.Sealer
	if s.SecretKey != nil {
		box, err := seal.New(s.SecretKey)
		if err != nil {
			from := VarSecretKey
			if s.SecretKeyARN != "" {
				from = VarSecretKeyARN
			}
			return nil, core.WrapError(core.EINVALID, err, "%s", from)
		}
		sealer = box
	}
	e.Catalog = catalog.New(catalog.Config{Store: e.Store, Sealer: sealer, Defaults: s.Defaults})
	if err := e.Catalog.Bootstrap(ctx, core.DefaultTenant, catalog.BootstrapConfig{OllamaURL: s.OllamaURL}); err != nil {
		return nil, core.WrapError(core.ErrorCode(err), err, "bootstrap the catalog in table %s", s.Table)
	}
	e.Fleets = fleet.NewTenants(fleet.Config{Source: e.Catalog, NewProvider: fleet.NewProvider, Policy: s.Policy, Logger: log})
	e.Fleets.For(core.DefaultTenant) // loaded at cold start, below
	if err := e.Refresh(ctx); err != nil {
		return nil, err
	}
	e.Tools, e.Remote = remote.NewRegistry(remote.SourceConfig{Store: e.Store, Sealer: sealer}, hooks.Echo(), hooks.Print(), hooks.Webhook(hooks.WebhookConfig{}))
	e.Engine = core.NewEngine(core.EngineConfig{Store: e.Store, LLM: e.Fleets.LLM(), Tools: e.Tools, Queue: e.Queue, Publisher: publisher, Meter: e.Meter,
		LeaseTTL: s.LeaseTTL})
	var fanout eventing.Fanout = eventing.QueueFanout{Queue: e.Queue}
	if e.Bus != nil {
		fanout = eventing.PublisherFanout{Publisher: e.Bus}
	}
	var evSealer eventing.Sealer // an untyped nil without a key
	if sealer != nil {
		evSealer = sealer
	}
	fns := eventing.NewFunctions(e.Store, nil)
	e.Events = eventing.NewBus(eventing.Config{
		Store: eventing.NewStore(e.Store, evSealer, nil), Functions: fns, Fanout: fanout,
		Runner:     eventing.InProcess{Sandbox: jsfunc.New(), Functions: fns},
		Executions: eventing.EngineExecutions{Engine: e.Engine, Store: e.Store},
		Chains:     e.Catalog.GetChain,
		HTTP:       egress.NewClient(egress.Policy{}),
		Logger:     log,
	})
	return e, nil
}

// Ingest returns the handler of the ingest function: /ingest over e.
func Ingest(e *Env) http.Handler {
	cfg := ingest.Config{Bus: e.Events, Logger: e.Logger}
	if e.Keys != nil {
		cfg.Keys = e.Keys
	}
	return ingest.New(cfg)
}

// Refresh reloads the fleet from the catalog when its last reload is more
// than a minute old (always, the first time).
func (e *Env) Refresh(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.reloaded.IsZero() && time.Since(e.reloaded) < staleAfter {
		return nil
	}
	if err := e.Fleets.Reload(ctx); err != nil {
		return core.WrapError(core.ErrorCode(err), err, "load the backends")
	}
	e.reloaded = time.Now()
	return nil
}

// refresh is Refresh for an invocation, which goes on with the backends it
// has when the catalog cannot be read.
func (e *Env) refresh(ctx context.Context) {
	if err := e.Refresh(ctx); err != nil && ctx.Err() == nil {
		e.Logger.Warn("reload backends; keeping the current ones", "error", err.Error())
	}
}

// API returns the management and execution API over e with the
// OpenAI-compatible routes beside it, the same http.Handler `stepwise
// serve` mounts, refreshing a stale fleet before each request. API and Worker are functions rather than methods of Env so
// that the linker leaves the API out of the worker's binary and the other
// way round (aws-lambda-go's use of reflection keeps every exported method
// of a reachable type).
func API(e *Env) http.Handler {
	a := api.New(api.Config{
		Catalog:     e.Catalog,
		Fleets:      func(tenant string) api.Fleet { return e.Fleets.For(tenant) },
		Engine:      e.Engine,
		Executions:  e.Store,
		SyncTimeout: e.Settings.SyncTimeout,
		Hooks:       e.Tools,
		Remote:      e.Remote,
		Version:     Version,
		NodeID:      uuid.NewString(),
		Logger:      e.Logger,
		Meter:       e.Meter,
		Keys:        e.Keys,
		Events:      e.Events,
	})
	return refreshed(e, openai.Mount(openAI(e, e.Settings.SyncTimeout), a))
}

// OpenAI returns the handler of the OpenAI function: OpenAI's routes
// only, refreshing a stale fleet before each request.
func OpenAI(e *Env) http.Handler { return refreshed(e, openAI(e, 0)) }

// openAI returns the OpenAI-compatible handler over e (functions/openai),
// running a chain for at most chainTimeout per request (0: until the
// invocation's deadline, less the delivery margin). The OpenAI function
// serves it behind its streaming Function URL; the API function mounts it
// beside the management API, so that API Gateway serves it too (answers
// buffered, within API Gateway's 30 s: the sync timeout).
func openAI(e *Env, chainTimeout time.Duration) *openai.Handler {
	return openai.New(openai.Config{
		Catalog:      e.Catalog,
		Models:       func(tenant string) openai.Models { return e.Fleets.For(tenant) },
		Engine:       e.Engine,
		Executions:   e.Store,
		Records:      e.Store,
		ChainTimeout: chainTimeout,
		Logger:       e.Logger,
		Meter:        e.Meter,
		Keys:         e.Keys,
	})
}

// refreshed is h behind a refresh of a stale fleet.
func refreshed(e *Env, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.refresh(r.Context())
		h.ServeHTTP(w, r)
	})
}

// Worker returns the SQS batch handler over e, running each delivery until
// the invocation's deadline minus the delivery margin, refreshing a stale
// fleet before each delivery.
func Worker(e *Env) *worker.Handler {
	tenants := access.New(access.Config{Store: e.Store}).Tenants
	return worker.New(worker.Config{Engine: refreshing{e}, Events: e.Events, Sweeper: e.Engine, Tenants: tenants, Margin: e.Settings.Margin, Logger: e.Logger})
}

// refreshing is the engine behind a fleet refresh.
type refreshing struct{ e *Env }

// Deliver implements worker.Deliverer.
func (r refreshing) Deliver(ctx context.Context, m core.QueueMessage, opts core.DeliverOptions, obs core.Observer) (core.DeliverResult, error) {
	r.e.refresh(ctx)
	return r.e.Engine.Deliver(ctx, m, opts, obs)
}
