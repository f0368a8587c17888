package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/seal"
	"github.com/stepwise-run/stepwise/functions/api"
)

// serveOptions are the settings of `stepwise serve`: flags, with the
// seed's environment variables for the default models and backend.
type serveOptions struct {
	addr            string
	dbPath          string
	keyFile         string
	policy          string
	syncInterval    time.Duration
	maxBody         int64
	readTimeout     time.Duration
	writeTimeout    time.Duration
	idleTimeout     time.Duration
	shutdownTimeout time.Duration
	logLevel        string
	defaults        catalog.Defaults
	ollamaURL       string
	ollamaName      string
	secretKey       string // STEPWISE_SECRET_KEY, base64 or hex
	// providerURLs replace the cloud providers' base URLs
	// (STEPWISE_OPENAI_BASE_URL, STEPWISE_GEMINI_BASE_URL).
	providerURLs map[string]string
	// The worker: how many deliveries run at once, how many steps and how
	// long one delivery runs before handing on, how long a claim lasts,
	// and how often executions nobody carries on are looked for.
	workers         int
	functionMemory  uint64
	functionWorkers int
	deliverySteps   int
	deliveryTimeout time.Duration
	leaseTTL        time.Duration
	sweepInterval   time.Duration
	syncTimeout     time.Duration
	// failpoint is the engine failpoint of a fault test (STEPWISE_FAILPOINT).
	failpoint func(string)
	// webhookAllowPrivate lets the webhook hook reach loopback and private
	// addresses (link-local and cloud metadata addresses stay refused).
	webhookAllowPrivate bool
	// auth requires an API key on every route but the probes, making and
	// printing the first (operator) key when the database has none.
	auth bool
	// stderr receives the first key's secret (default os.Stderr).
	stderr io.Writer
}

// Defaults of `stepwise serve`.
const (
	defaultAddr = "127.0.0.1:8081"
	defaultDB   = ".stepwise/stepwise.db"
	keyFileName = "secret.key"
)

func parseServeFlags(args []string, e env) (*serveOptions, error) {
	fs := flag.NewFlagSet("stepwise serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	o := &serveOptions{stderr: e.stderr}
	fs.StringVar(&o.addr, "addr", envOr(e, "STEPWISE_ADDR", defaultAddr), "address to listen on (env STEPWISE_ADDR)")
	fs.StringVar(&o.dbPath, "db", envOr(e, "STEPWISE_DB", defaultDB), "SQLite file holding everything; created with its folder (env STEPWISE_DB)")
	fs.StringVar(&o.keyFile, "secret-key-file", envOr(e, "STEPWISE_SECRET_KEY_FILE", ""), "file with the key that encrypts provider API keys (default: secret.key beside -db); created when missing, unless STEPWISE_SECRET_KEY is set")
	fs.StringVar(&o.policy, "routing-policy", envOr(e, "STEPWISE_ROUTING_POLICY", core.PolicyOrdered), "default routing policy: "+strings.Join(core.RoutingPolicies(), ", "))
	fs.DurationVar(&o.syncInterval, "sync-interval", 10*time.Second, "how often backends' model lists are refreshed and missing models pulled")
	fs.Int64Var(&o.maxBody, "max-body", api.DefaultMaxBodyBytes, "largest request body in bytes; larger ones get 413")
	fs.DurationVar(&o.readTimeout, "read-timeout", 30*time.Second, "limit on reading a request, body included")
	fs.DurationVar(&o.writeTimeout, "write-timeout", 10*time.Minute, "limit on answering a request (a synchronous /tasks waits for its chain); event streams are exempt")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 2*time.Minute, "how long an idle keep-alive connection stays open")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long requests in flight may take to finish")
	fs.StringVar(&o.logLevel, "log-level", envOr(e, "STEPWISE_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.IntVar(&o.workers, "workers", 4, "executions run at once in the background")
	fs.IntVar(&o.functionWorkers, "function-workers", 2, "child processes that run JavaScript functions, one run at a time each")
	var functionMiB int
	fs.IntVar(&functionMiB, "function-memory", 512, "MiB of resident memory a function's child process may use before it is killed")
	fs.IntVar(&o.deliverySteps, "delivery-steps", 50, "steps one worker delivery runs before it hands the execution on")
	fs.DurationVar(&o.deliveryTimeout, "delivery-timeout", 10*time.Minute, "time one worker delivery runs before it hands the execution on")
	fs.DurationVar(&o.leaseTTL, "lease-ttl", 3*time.Second, "how long a worker's claim on an execution lasts without a commit or a heartbeat (every third of it); after a crash and a restart the execution continues within this")
	fs.DurationVar(&o.sweepInterval, "sweep-interval", 30*time.Second, "how often executions that nobody carries on are sent to the workers again")
	fs.BoolVar(&o.webhookAllowPrivate, "webhook-allow-private", false, "let the webhook hook call loopback and private-network addresses (link-local and cloud metadata addresses are always refused)")
	fs.BoolVar(&o.auth, "auth", envOr(e, "STEPWISE_AUTH", "") == "on", "require an API key on every route but /health, /version and /openapi.json, and print the first key (operator and admin) when there is none (env STEPWISE_AUTH=on); a database that has keys always requires them")
	fs.DurationVar(&o.syncTimeout, "sync-timeout", 25*time.Second, "how long POST /tasks and /execute wait for an execution before answering 202 with its id")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	if err := core.CheckRoutingPolicy("-routing-policy", o.policy); err != nil {
		return nil, usageError{err}
	}
	if _, err := logLevel(o.logLevel); err != nil {
		return nil, usageError{err}
	}
	if o.maxBody <= 0 || o.syncInterval <= 0 || o.workers <= 0 || o.deliverySteps <= 0 || o.deliveryTimeout <= 0 || o.leaseTTL <= 0 || o.sweepInterval <= 0 || o.syncTimeout <= 0 || o.functionWorkers <= 0 {
		return nil, usagef("-max-body, -sync-interval, -workers, -delivery-steps, -delivery-timeout, -lease-ttl, -sweep-interval, -sync-timeout and -function-workers must be positive")
	}
	if o.leaseTTL < 100*time.Millisecond {
		return nil, usagef("-lease-ttl: %s is too short; a running step renews its lease every third of it, in a write", o.leaseTTL)
	}
	if functionMiB < 64 {
		return nil, usagef("-function-memory: %d MiB is too little for a function's process; give at least 64", functionMiB)
	}
	o.functionMemory = uint64(functionMiB) << 20
	var err error
	if o.defaults, err = catalog.ParseDefaults(e.getenv); err != nil {
		return nil, usageError{err}
	}
	o.ollamaURL = strings.TrimSpace(e.getenv("OLLAMA_BACKEND_URL"))
	o.ollamaName = envOr(e, "OLLAMA_BACKEND_NAME", catalog.DefaultOllamaName)
	o.secretKey = e.getenv("STEPWISE_SECRET_KEY")
	o.providerURLs = map[string]string{}
	for typ, name := range map[string]string{catalog.ProviderOpenAI: "STEPWISE_OPENAI_BASE_URL", catalog.ProviderGemini: "STEPWISE_GEMINI_BASE_URL"} {
		if v := strings.TrimSpace(e.getenv(name)); v != "" {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, usagef("%s=%q: want an http(s) URL such as https://gateway.example/v1", name, v)
			}
			o.providerURLs[typ] = v
		}
	}
	o.dbPath = resolve(e.workdir, o.dbPath)
	if o.keyFile == "" {
		// Beside the database, so that the two travel together and a
		// server started from another directory finds the same key.
		o.keyFile = filepath.Join(filepath.Dir(o.dbPath), keyFileName)
	}
	o.keyFile = resolve(e.workdir, o.keyFile)
	return o, nil
}

// envOr returns the environment variable name, or def when it is unset
// or empty.
func envOr(e env, name, def string) string {
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

// resolve makes a relative path relative to the working directory.
func resolve(workdir, path string) string {
	if filepath.IsAbs(path) || workdir == "" {
		return path
	}
	return filepath.Join(workdir, path)
}

// secretKey returns the key that seals provider API keys: from
// STEPWISE_SECRET_KEY when set, else from the key file, which is created
// with a new random key (mode 0600) when it does not exist.
func secretKey(o *serveOptions) ([]byte, error) {
	if o.secretKey != "" {
		k, err := seal.ParseKey(o.secretKey)
		if err != nil {
			return nil, fmt.Errorf("STEPWISE_SECRET_KEY: %w", err)
		}
		return k, nil
	}
	b, err := os.ReadFile(o.keyFile)
	if err == nil {
		k, err := seal.ParseKey(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("secret key file %s: %w", o.keyFile, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("secret key file: %w", err)
	}
	k := seal.GenerateKey()
	if err := os.MkdirAll(filepath.Dir(o.keyFile), 0o700); err != nil {
		return nil, fmt.Errorf("secret key file: %w", err)
	}
	// O_EXCL: if another process created the file meanwhile, use theirs.
	f, err := os.OpenFile(o.keyFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return secretKey(o)
	}
	if err != nil {
		return nil, fmt.Errorf("secret key file: %w", err)
	}
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("secret key file %s: %w", o.keyFile, werr)
	}
	return k, nil
}
