package localexec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// Name is the hook's name, and its one tool's.
const Name = "local_exec"

// Bounds of a run's request.
const (
	maxArgs     = 256
	maxArgBytes = 32 << 10
	maxStdin    = 1 << 20
)

// Result is what a run returns, as the seed's local_exec does: a program
// that ran and failed is a result with success false, not an error.
type Result struct {
	ExitCode        int     `json:"exit_code"`
	Stdout          string  `json:"stdout"`
	Stderr          string  `json:"stderr"`
	Success         bool    `json:"success"`
	Error           string  `json:"error,omitempty"`
	DurationSeconds float64 `json:"duration_seconds"`
	Command         string  `json:"command"`
}

// Hook is the local_exec hook.
type Hook struct {
	policy *compiled
	tool   core.Tool
}

// New returns the hook of a policy, or why the policy cannot be used (no
// allow list, an interpreter on it, a directory that does not exist).
func New(p Policy) (*Hook, error) {
	c, err := compile(p)
	if err != nil {
		return nil, err
	}
	props := map[string]any{
		"command": map[string]any{"type": "string", "description": "The program to run: a name or a path. No shell: pipes, redirections and ; are not interpreted."},
		"args":    map[string]any{"type": "array", "items": map[string]any{"type": "string"}, "description": "The program's arguments, one item each."},
		"cwd":     map[string]any{"type": "string", "description": "Working directory, relative to " + c.workDir + " and inside it."},
		"stdin":   map[string]any{"type": "string", "description": "Text given to the program on its standard input."},
		"timeout": map[string]any{"type": "string", "description": fmt.Sprintf("How long the program may run, e.g. 10s (default %s).", c.Timeout)},
	}
	desc := "Runs a program on this machine and returns its exit code, stdout and stderr. " + c.describe() + "."
	if c.AllowShell {
		props["shell"] = map[string]any{"type": "boolean", "description": "Run command as a /bin/sh -c line."}
	}
	return &Hook{policy: c, tool: core.Tool{Type: "function", Function: core.ToolFunction{
		Name: Name, Description: desc,
		Parameters: map[string]any{"type": "object", "properties": props, "required": []any{"command"}},
	}}}, nil
}

// Name implements hooks.Hook.
func (h *Hook) Name() string { return Name }

// Tools implements hooks.Hook.
func (h *Hook) Tools(context.Context) ([]core.Tool, error) { return []core.Tool{h.tool}, nil }

// request is one run, as a model's call or a hook task asks for it.
type request struct {
	command string
	args    []string
	cwd     string
	stdin   string
	timeout time.Duration
	shell   bool
	env     map[string]string
}

// Call implements hooks.Hook. A model's call gives command, args, cwd,
// stdin, timeout and shell as its arguments; a hook task gives them as
// static args (args a JSON list or words), its input being the program's
// stdin, or the command line itself when no command is set. A run the
// policy refuses is an error and runs nothing.
func (h *Hook) Call(ctx context.Context, call core.HookCall) (core.Value, error) {
	req, err := h.request(call)
	if err != nil {
		return core.Value{}, core.WrapError(core.EINVALID, err, "local_exec")
	}
	cmd, err := h.command(req)
	if err != nil {
		return core.Value{}, core.WrapError(core.EFORBIDDEN, err, "local_exec")
	}
	res := run(ctx, cmd, req)
	return core.Value{Type: core.TypeJSON, Data: res.value()}, nil
}

func (r Result) value() map[string]any {
	b, _ := json.Marshal(r)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// request reads a call.
func (h *Hook) request(call core.HookCall) (request, error) {
	var req request
	static := call.Args
	if m, ok := call.Input.Data.(map[string]any); ok && call.Input.Type == core.TypeJSON {
		if err := fromMap(&req, m); err != nil {
			return req, err
		}
	} else {
		if err := fromStatic(&req, static); err != nil {
			return req, err
		}
		text := ""
		if call.Input.Type != "" && call.Input.Type != core.TypeNil {
			text = call.Input.Display()
		}
		if req.command == "" {
			words := strings.Fields(text)
			if len(words) == 0 {
				return req, errors.New("command: required (hook.args.command, or the command line as the input)")
			}
			req.command, req.args = words[0], append(words[1:], req.args...)
		} else {
			req.stdin = text
		}
	}
	// The task's static args set what a model's call leaves out.
	if req.cwd == "" {
		req.cwd = static["cwd"]
	}
	if req.timeout == 0 && static["timeout"] != "" {
		d, err := parseTimeout(static["timeout"])
		if err != nil {
			return req, err
		}
		req.timeout = d
	}
	if env := static["env"]; env != "" && req.env == nil {
		if err := json.Unmarshal([]byte(env), &req.env); err != nil {
			return req, fmt.Errorf("env: want a JSON object of strings: %w", err)
		}
	}
	switch {
	case strings.TrimSpace(req.command) == "":
		return req, errors.New("command: required")
	case len(req.args) > maxArgs:
		return req, fmt.Errorf("args: at most %d", maxArgs)
	case len(req.stdin) > maxStdin:
		return req, fmt.Errorf("stdin: at most %d bytes", maxStdin)
	}
	for i, a := range req.args {
		if len(a) > maxArgBytes || strings.ContainsRune(a, 0) {
			return req, fmt.Errorf("args[%d]: at most %d bytes and no NUL", i, maxArgBytes)
		}
	}
	if req.timeout == 0 {
		req.timeout = h.policy.Timeout
	}
	if limit := max(h.policy.Timeout, MaxTimeout); req.timeout > limit {
		return req, fmt.Errorf("timeout: at most %s", limit)
	}
	return req, nil
}

// fromMap reads a model's arguments.
func fromMap(req *request, m map[string]any) error {
	var ok bool
	if req.command, ok = m["command"].(string); !ok && m["command"] != nil {
		return errors.New("command: want a string")
	}
	switch a := m["args"].(type) {
	case nil:
	case string:
		req.args = strings.Fields(a)
	case []any:
		for i, x := range a {
			s, ok := x.(string)
			if !ok {
				if f, isNum := x.(float64); isNum {
					s = strconv.FormatFloat(f, 'f', -1, 64)
				} else {
					return fmt.Errorf("args[%d]: want a string", i)
				}
			}
			req.args = append(req.args, s)
		}
	default:
		return errors.New("args: want a list of strings")
	}
	req.cwd, _ = m["cwd"].(string)
	req.stdin, _ = m["stdin"].(string)
	req.shell, _ = m["shell"].(bool)
	switch t := m["timeout"].(type) {
	case nil:
	case string:
		d, err := parseTimeout(t)
		if err != nil {
			return err
		}
		req.timeout = d
	case float64:
		req.timeout = time.Duration(t * float64(time.Second))
	default:
		return errors.New("timeout: want a duration such as 10s")
	}
	return nil
}

// fromStatic reads a hook task's static args.
func fromStatic(req *request, args map[string]string) error {
	req.command = args["command"]
	if a := strings.TrimSpace(args["args"]); strings.HasPrefix(a, "[") {
		if err := json.Unmarshal([]byte(a), &req.args); err != nil {
			return fmt.Errorf("args: a list must be a JSON array of strings: %w", err)
		}
	} else {
		req.args = strings.Fields(a)
	}
	if s := args["shell"]; s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("shell: %q is not true or false", s)
		}
		req.shell = b
	}
	return nil
}

func parseTimeout(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("timeout: %q is not a positive duration such as 10s", s)
	}
	return d, nil
}

// command checks a run against the policy and builds it.
func (h *Hook) command(req request) (*exec.Cmd, error) {
	p := h.policy
	cwd, err := p.cwd(req.cwd)
	if err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	if req.shell {
		if !p.AllowShell {
			return nil, errors.New("shell: running through a shell is not allowed (the user may allow it with -local-exec-allow-shell)")
		}
		line := strings.Join(append([]string{req.command}, req.args...), " ")
		cmd = exec.Command("/bin/sh", "-c", line)
	} else {
		path, err := p.program(req.command, cwd)
		if err != nil {
			return nil, err
		}
		// The rules of the program as invoked and as it really is: a
		// symlink's name must not hide the program's own rules.
		real, _ := filepath.EvalSymlinks(path)
		for _, prog := range []string{filepath.Base(path), filepath.Base(real)} {
			if err := checkArgs(prog, req.args); err != nil {
				return nil, err
			}
		}
		cmd = exec.Command(path, req.args...)
		cmd.Args[0] = filepath.Base(path)
	}
	cmd.Dir = cwd
	env, err := cleanEnv(p.path, req.env)
	if err != nil {
		return nil, err
	}
	cmd.Env = env
	return cmd, nil
}

// passedEnv are the variables of stepwise's own environment a program
// gets; everything else (LD_PRELOAD, GIT_*, credentials) stays out.
var passedEnv = []string{"HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM"}

// refusedEnv and refusedEnvPrefixes are variables a chain may not set:
// each makes programs load or run other code.
var (
	refusedEnv = []string{"PATH", "BASH_ENV", "ENV", "SHELLOPTS", "PS4", "IFS", "CDPATH", "GCONV_PATH", "RUBYOPT", "NODE_OPTIONS", "EDITOR", "VISUAL", "PAGER",
		"HOME", "TAR_OPTIONS", "LESSOPEN", "LESSCLOSE", "LESSKEY", "WGETRC", "CURL_HOME", "GREP_OPTIONS", "TMPDIR"}
	refusedEnvPrefixes = []string{"LD_", "DYLD_", "GIT_", "PYTHON", "PERL5", "MALLOC_", "BASH_FUNC_", "XDG_", "SSH_"}
)

func cleanEnv(path []string, extra map[string]string) ([]string, error) {
	env := []string{"PATH=" + strings.Join(path, string(os.PathListSeparator))}
	for _, k := range passedEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range extra {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("env: %q is not a valid variable", k)
		}
		refused := slices.Contains(refusedEnv, k)
		for _, p := range refusedEnvPrefixes {
			refused = refused || strings.HasPrefix(k, p)
		}
		if refused {
			return nil, fmt.Errorf("env: %s cannot be set: it makes programs load or run other code", k)
		}
		env = append(env, k+"="+v)
	}
	return env, nil
}

// run starts the program and waits for it, killing its process group at
// the timeout or when ctx ends.
func run(ctx context.Context, cmd *exec.Cmd, req request) Result {
	res := Result{Command: strings.Join(append([]string{req.command}, req.args...), " "), ExitCode: -1}
	ctx, cancel := context.WithTimeout(ctx, req.timeout)
	defer cancel()
	var stdout, stderr capped
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = strings.NewReader(req.stdin)
	isolate(cmd)
	start := time.Now()
	err := cmd.Start()
	if err == nil {
		stop := context.AfterFunc(ctx, func() { kill(cmd) })
		err = cmd.Wait()
		stop()
	}
	res.DurationSeconds = time.Since(start).Seconds()
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil && (err != nil || cmd.ProcessState == nil || !cmd.ProcessState.Success()):
		res.Error = fmt.Sprintf("killed after %s: %v", req.timeout, context.Cause(ctx))
		if errors.Is(ctx.Err(), context.Canceled) {
			res.Error = "killed: the step was interrupted"
		}
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
		res.Error = exitErr.Error()
	case err != nil:
		res.Error = err.Error()
	default:
		res.ExitCode, res.Success = 0, true
	}
	return res
}

// capped keeps the first MaxOutput bytes written to it.
type capped struct {
	buf bytes.Buffer
	cut int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := MaxOutput - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(room, len(p))])
		c.cut += max(len(p)-room, 0)
	} else {
		c.cut += len(p)
	}
	return len(p), nil
}

func (c *capped) String() string {
	s := strings.ToValidUTF8(c.buf.String(), "\uFFFD")
	if c.cut > 0 {
		s += fmt.Sprintf("\n[stepwise: %d more bytes cut]", c.cut)
	}
	return s
}
