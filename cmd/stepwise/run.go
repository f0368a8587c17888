package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/ollama"
	"github.com/stepwise-run/stepwise/core/llm/openai"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// runOptions are the settings of one `stepwise run`, after flags and the
// config file are merged.
type runOptions struct {
	chainPath     string
	input         string
	inputGiven    bool
	inputType     string
	typeGiven     bool
	model         string
	context       int
	ollamaURL     string
	openAIBaseURL string
	steps         bool
	trace         bool
	raw           bool
	timeout       time.Duration
	vars          map[string]string
	extraModels   []extraModel
	varsFromEnv   []string
	useOllama     bool
	localExec     localExecOptions
	mcpServers    []mcpServerConfig
}

// defaultOllama is where a local Ollama listens.
const defaultOllama = "http://127.0.0.1:11434"

// usageError marks a mistake in flags, config, chain or input (exit 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// varFlag collects repeated -var NAME=VALUE flags.
type varFlag map[string]string

func (v varFlag) String() string { return "" }

func (v varFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want NAME=VALUE, got %q", s)
	}
	v[name] = value
	return nil
}

func parseRunFlags(args []string, e env) (*runOptions, error) {
	fs := flag.NewFlagSet("stepwise run", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	o := &runOptions{vars: map[string]string{}}
	fs.StringVar(&o.chainPath, "chain", "", "chain file, JSON or YAML (default: the config's default_chain or .stepwise/default-chain.json)")
	fs.StringVar(&o.input, "input", "", "the execution's input (default: read from stdin when it is piped)")
	fs.StringVar(&o.inputType, "input-type", "string", "data type of the input: "+dataTypeNames())
	fs.StringVar(&o.model, "model", "", "default model for every task that names none, e.g. llama3.2:1b")
	fs.IntVar(&o.context, "context", 0, "context length of -model in tokens (0 = unknown, not checked)")
	fs.StringVar(&o.ollamaURL, "ollama", defaultOllama, "Ollama base URL")
	fs.StringVar(&o.openAIBaseURL, "openai-base-url", "", "base URL of an OpenAI-compatible API (OpenAI, vLLM, Gemini, ...); the key is read from OPENAI_API_KEY")
	fs.BoolVar(&o.steps, "steps", false, "print one line per step on stderr: index, task, handler, duration, model, error, transition")
	fs.BoolVar(&o.trace, "trace", false, "print every step record as a JSON line on stderr")
	fs.BoolVar(&o.raw, "raw", false, "print the whole output as JSON instead of its text")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "stop the execution after this long")
	fs.Var(varFlag(o.vars), "var", "template variable NAME=VALUE for {{var:NAME}} (repeatable)")
	addLocalExecFlags(fs, &o.localExec)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q (flags go before it; quote an input with spaces: -input \"...\")", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.inputGiven = set["input"]
	o.typeGiven = set["input-type"]

	cfg, err := loadConfig(e)
	if err != nil {
		return nil, usageError{err}
	}
	if !set["chain"] && o.chainPath == "" {
		if o.chainPath, err = defaultChainPath(e, cfg); err != nil {
			return nil, usageError{err}
		}
	}
	if !set["ollama"] && cfg.Ollama != "" {
		o.ollamaURL = cfg.Ollama
	}
	if !set["openai-base-url"] && cfg.OpenAIBaseURL != "" {
		o.openAIBaseURL = cfg.OpenAIBaseURL
	}
	if !set["model"] {
		o.model = cfg.Model
	}
	if !set["context"] && cfg.Context > 0 {
		o.context = cfg.Context
	}
	if !set["steps"] {
		o.steps = cfg.Steps
	}
	if !set["trace"] {
		o.trace = cfg.Trace
	}
	if !set["raw"] {
		o.raw = cfg.Raw
	}
	if !set["timeout"] && cfg.Timeout != "" {
		if o.timeout, err = time.ParseDuration(cfg.Timeout); err != nil {
			return nil, usagef("config timeout: malformed duration %q", cfg.Timeout)
		}
	}
	if o.timeout <= 0 {
		return nil, usagef("-timeout must be positive")
	}
	o.extraModels = cfg.ExtraModels
	o.varsFromEnv = cfg.TemplateVarsFromEnv
	o.mcpServers = cfg.MCPServers
	if err := mergeLocalExec(&o.localExec, cfg, set); err != nil {
		return nil, err
	}
	// An OpenAI-compatible base URL replaces the default Ollama backend
	// unless Ollama was asked for too.
	o.useOllama = o.openAIBaseURL == "" || set["ollama"] || cfg.Ollama != ""
	return o, nil
}

func dataTypeNames() string {
	types := core.DataTypes()
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// runCommand is `stepwise run`.
func runCommand(ctx context.Context, args []string, e env) int {
	o, err := parseRunFlags(args, e)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "stepwise: %v\n", err)
		return exitUsage
	}
	code, err := run(ctx, o, e)
	if err != nil {
		reportError(e.stderr, err)
	}
	return code
}

// reportError prints an error as one line per problem, never a stack.
func reportError(w io.Writer, err error) {
	var ve *core.ValidationError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			fmt.Fprintf(w, "stepwise: invalid chain: %s\n", oneLine(p.String()))
		}
		return
	}
	fmt.Fprintf(w, "stepwise: %s\n", oneLine(err.Error()))
}

// oneLine folds a message's line breaks and runs of spaces into single
// spaces: a message is one line, whatever a backend put into it.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func run(ctx context.Context, o *runOptions, e env) (int, error) {
	file, err := loadChain(o.chainPath, e.stderr)
	if err != nil {
		return exitUsage, err
	}
	chain := file.chain
	input, err := readInput(o, e, file)
	if err != nil {
		return exitUsage, err
	}
	if err := checkModels(chain, o, input); err != nil {
		return exitUsage, err
	}
	router, err := newRouter(o, e)
	if err != nil {
		return exitUsage, err
	}
	tools, closeTools, err := runTools(ctx, o, e)
	if err != nil {
		return exitUsage, err
	}
	defer closeTools()
	if line := describeLocalExec(o.localExec); line != "" && o.steps {
		fmt.Fprintln(e.stderr, line)
	}
	// One execution that never leaves the process: kept as values, not
	// encoded at every step.
	engine := core.NewEngine(core.EngineConfig{Store: mem.NewLive(), LLM: router, Tools: tools})
	vars := map[string]string{"model": o.model, "provider": providerName(o), "chain": chain.ID}
	for k, v := range file.vars {
		vars[k] = v
	}
	for _, name := range o.varsFromEnv {
		vars[name] = e.getenv(name)
	}
	for k, v := range o.vars {
		vars[k] = v
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	view := newProgress(e.stderr, e.stderrIsTerminal, o.steps, o.trace)
	defer view.stop()
	ex, err := engine.Execute(ctx, core.StartRequest{Chain: chain, Input: input, TemplateVars: vars, Validated: true}, view)
	view.stop()
	if err != nil {
		if core.ErrorCode(err) == core.EINVALID {
			return exitUsage, err
		}
		if core.ErrorCode(err) == core.ETIMEOUT && ex != nil {
			why := fmt.Sprintf("timed out after %s", o.timeout)
			if errors.Is(ctx.Err(), context.Canceled) {
				why = "interrupted"
			}
			return exitFailed, fmt.Errorf("%s: %d steps done, task %q was running", why, ex.StepCount, ex.Cursor.Task)
		}
		return exitFailed, err
	}
	if ex.Status != core.StatusSucceeded {
		msg := "execution " + string(ex.Status)
		if ex.Error != nil {
			msg = ex.Error.Message
		}
		return exitFailed, errors.New(msg)
	}
	if err := printOutput(e.stdout, ex.Output, o.raw); err != nil {
		return exitFailed, err
	}
	return exitOK, nil
}

// chainFile is what a chain file holds: a chain, or a request to run one
// in the shape of the API's POST /tasks (the seed README's qa.json), whose
// input, inputType and templateVars serve as defaults for the flags.
type chainFile struct {
	chain     *core.Chain
	input     any
	hasInput  bool
	inputType string
	vars      map[string]string
}

// loadChain reads, decodes and validates a chain file, printing decoder
// warnings. A chain without an id takes the file's name.
func loadChain(path string, warn io.Writer) (*chainFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read chain: %w", err)
	}
	tree, err := core.ParseDocument(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f := &chainFile{}
	var (
		chain    *core.Chain
		warnings []core.Problem
	)
	isRequest := core.IsRunRequest(tree)
	if isRequest {
		var req *core.RunRequest
		req, warnings, err = core.DecodeRunRequest(tree)
		if req != nil {
			chain, f.input, f.hasInput, f.inputType, f.vars = req.Chain, req.Input, req.HasInput, req.InputType, req.TemplateVars
		}
	} else {
		chain, warnings, err = core.DecodeChainValue(tree)
	}
	for _, w := range warnings {
		fmt.Fprintf(warn, "stepwise: warning: %s: %s\n", path, w)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if chain.ID == "" {
		chain.ID = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	if err := core.Validate(chain); err != nil {
		if isRequest {
			err = core.InRunRequest(err)
		}
		return nil, err
	}
	f.chain = chain
	return f, nil
}

// checkModels catches, before anything runs, a task that needs a model
// when none is given: neither -model nor the task's execute_config names
// one (an openai_chat input may carry its own).
func checkModels(c *core.Chain, o *runOptions, input core.Value) error {
	if o.model != "" || input.Type == core.TypeOpenAIChat {
		return nil
	}
	for _, t := range c.Tasks {
		switch t.Handler {
		case core.HandlerPromptToString, core.HandlerPromptToCondition, core.HandlerPromptToInt,
			core.HandlerPromptToFloat, core.HandlerPromptToRange, core.HandlerPromptToJS,
			core.HandlerTextToEmbedding, core.HandlerChatCompletion:
		default:
			continue
		}
		if ec := t.ExecuteConfig; ec != nil && (ec.Model != "" || len(ec.Models) > 0) {
			continue
		}
		return usagef("task %q (%s) needs a model: pass -model NAME or set model in .stepwise/config.yaml", t.ID, t.Handler)
	}
	return nil
}

// readInput takes -input, or the chain file's input, or stdin when it is
// piped, and coerces it to -input-type (or the file's inputType).
func readInput(o *runOptions, e env, file *chainFile) (core.Value, error) {
	typeName := o.inputType
	if !o.typeGiven && file.inputType != "" {
		typeName = file.inputType
	}
	typ, err := core.ParseDataType(typeName)
	if err != nil {
		return core.Value{}, usagef("-input-type: %v", err)
	}
	if !o.inputGiven && file.hasInput {
		v, err := core.Coerce(typ, file.input)
		if err != nil {
			return core.Value{}, usagef("the chain file's input: %v", err)
		}
		return v, nil
	}
	text := o.input
	if !o.inputGiven {
		if typ == core.TypeNil {
			return core.Nil, nil
		}
		if e.stdinIsTerminal {
			return core.Value{}, usagef("no input: pass -input TEXT or pipe it on stdin")
		}
		b, err := io.ReadAll(e.stdin)
		if err != nil {
			return core.Value{}, fmt.Errorf("read stdin: %w", err)
		}
		text = strings.TrimRight(string(b), "\r\n")
		if text == "" {
			return core.Value{}, usagef("no input: stdin was empty")
		}
	}
	v, err := core.Coerce(typ, text)
	if err != nil {
		return core.Value{}, usagef("-input: %v", err)
	}
	return v, nil
}

// newRouter builds the model router over the configured backends.
func newRouter(o *runOptions, e env) (*llm.Router, error) {
	hc := &http.Client{Transport: http.DefaultTransport}
	var backends []llm.Backend
	if o.useOllama {
		p, err := ollama.New(o.ollamaURL, hc)
		if err != nil {
			return nil, usagef("-ollama: %v", err)
		}
		backends = append(backends, llm.Backend{Name: "ollama", Type: "ollama", Provider: p})
	}
	if o.openAIBaseURL != "" {
		p, err := openai.New(openai.Config{BaseURL: o.openAIBaseURL, APIKey: e.getenv("OPENAI_API_KEY"), HTTPClient: hc})
		if err != nil {
			return nil, usagef("-openai-base-url: %v", err)
		}
		backends = append(backends, llm.Backend{Name: "openai", Type: "openai", Provider: p})
	}
	var models []llm.Model
	if o.model != "" {
		models = append(models, llm.Model{Name: o.model, ContextLength: o.context, CanChat: true, CanPrompt: true, CanEmbed: true})
	}
	for i, m := range o.extraModels {
		if m.Name == "" {
			return nil, usagef("config extra_models[%d]: missing name", i)
		}
		models = append(models, llm.Model{
			Name: m.Name, ContextLength: m.Context,
			CanChat: orDefault(m.CanChat, true), CanPrompt: orDefault(m.CanPrompt, true), CanEmbed: orDefault(m.CanEmbed, false),
		})
	}
	return llm.NewRouter(backends, models, llm.Defaults{Chat: o.model, Prompt: o.model, Embed: o.model}), nil
}

func orDefault(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func providerName(o *runOptions) string {
	if o.openAIBaseURL != "" && !o.useOllama {
		return "openai"
	}
	return "ollama"
}

// printOutput writes the execution's output: its text, or with raw the
// whole value as JSON.
func printOutput(w io.Writer, out core.Value, raw bool) error {
	if raw {
		b, err := json.MarshalIndent(out.Data, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	var text string
	switch d := out.Data.(type) {
	case nil:
		return nil
	case core.ChatHistory:
		text = d.Last().Content
	case core.OpenAIChatResponse:
		if len(d.Choices) > 0 && d.Choices[0].Message.Content != nil {
			text = *d.Choices[0].Message.Content
		}
	default:
		if s, err := out.Text(); err == nil {
			text = s
		} else {
			b, err := json.MarshalIndent(out.Data, "", "  ")
			if err != nil {
				return err
			}
			text = string(b)
		}
	}
	_, err := fmt.Fprintln(w, text)
	return err
}
