package localexec_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks/localexec"
)

// trustedPath is the search path of the tests: the system's programs only.
var trustedPath = []string{"/usr/local/bin", "/usr/bin", "/bin"}

// workspace is a project folder with a canary file that no refused run
// may touch, a planted "ls" that would delete it, and symlinks that point
// out of the folder.
func workspace(t *testing.T) (dir, canary string) {
	t.Helper()
	dir = t.TempDir()
	canary = filepath.Join(dir, "canary")
	write(t, canary, "alive", 0o644)
	write(t, filepath.Join(dir, "ls"), "#!/bin/sh\nrm -f "+canary+"\n", 0o755)
	if err := os.Symlink("/bin/sh", filepath.Join(dir, "tool")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/bin/rm", filepath.Join(dir, "lister")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(dir, "etc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, canary
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func newHook(t *testing.T, p localexec.Policy) *localexec.Hook {
	t.Helper()
	if p.Path == nil {
		p.Path = trustedPath
	}
	h, err := localexec.New(p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func modelCall(args map[string]any) core.HookCall {
	return core.HookCall{Hook: localexec.Name, Tool: localexec.Name, Input: core.Value{Type: core.TypeJSON, Data: args}}
}

func result(t *testing.T, v core.Value) localexec.Result {
	t.Helper()
	b, err := json.Marshal(v.Data)
	if err != nil {
		t.Fatal(err)
	}
	var r localexec.Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBypasses tries every row of reliability.md §3.5: each is refused
// before anything runs, or runs only the allowed program with the attack
// as a literal argument; the canary survives all of them.
func TestBypasses(t *testing.T) {
	dir, canary := workspace(t)
	t.Setenv("STEPWISE_TEST_SECRET", "hunter2")
	h := newHook(t, localexec.Policy{
		AllowedCommands: []string{"ls", "cat", "echo", "find", "tar", "rm"},
		DeniedCommands:  []string{"rm"},
		WorkDir:         dir,
	})
	refused := []struct {
		name string
		call core.HookCall
		want string
	}{
		{"shell metacharacters in the command", modelCall(map[string]any{"command": "ls; rm " + canary}), "printable ASCII"},
		{"a newline in the command", modelCall(map[string]any{"command": "ls\nrm"}), "printable ASCII"},
		{"a shell asked for", modelCall(map[string]any{"command": "ls", "shell": true}), "shell"},
		{"a shell from a hook task", core.HookCall{Args: map[string]string{"command": "ls", "shell": "true"}}, "shell"},
		{"a program off the allow list", modelCall(map[string]any{"command": "sleep"}), "not on the allow list"},
		{"an exec wrapper", modelCall(map[string]any{"command": "env", "args": []any{"rm", canary}}), "not on the allow list"},
		{"xargs", modelCall(map[string]any{"command": "xargs"}), "not on the allow list"},
		{"an interpreter", modelCall(map[string]any{"command": "sh", "args": []any{"-c", "rm " + canary}}), "not on the allow list"},
		{"denied first, though allowed", modelCall(map[string]any{"command": "rm", "args": []any{canary}}), "denied"},
		{"a denied program by a path with ..", modelCall(map[string]any{"command": "/usr/bin/../bin/rm", "args": []any{canary}}), "denied"},
		{"a denied program by absolute path", modelCall(map[string]any{"command": "/usr/bin/rm", "args": []any{canary}}), "denied"},
		{"a planted ./ls", modelCall(map[string]any{"command": "./ls"}), "not on the allow list"},
		{"a symlink to a shell", modelCall(map[string]any{"command": "./tool", "args": []any{"-c", "rm " + canary}}), "not on the allow list"},
		{"a symlink named like nothing to rm", modelCall(map[string]any{"command": "./lister", "args": []any{canary}}), "denied"},
		{"a non-breaking space", modelCall(map[string]any{"command": "ls\u00a0"}), "printable ASCII"},
		{"a confusable name", modelCall(map[string]any{"command": "lѕ"}), "printable ASCII"},
		{"another case", modelCall(map[string]any{"command": "LS"}), "not on the trusted PATH"},
		{"find -exec", modelCall(map[string]any{"command": "find", "args": []any{".", "-name", "canary", "-exec", "rm", "{}", ";"}}), "-exec"},
		{"find -delete", modelCall(map[string]any{"command": "find", "args": []any{".", "-delete"}}), "-delete"},
		{"tar --to-command", modelCall(map[string]any{"command": "tar", "args": []any{"-xf", "a.tar", "--to-command=sh"}}), "--to-command"},
		{"tar -I in a bundle", modelCall(map[string]any{"command": "tar", "args": []any{"-xIsh", "-f", "a.tar"}}), "-I"},
		{"tar -I in a bundle without a dash", modelCall(map[string]any{"command": "tar", "args": []any{"xIsh", "-f", "a.tar"}}), "-I"},
		{"an abbreviated long option", modelCall(map[string]any{"command": "tar", "args": []any{"-xf", "a.tar", "--to-comm=sh"}}), "--to-command"},
		{"TAR_OPTIONS from the chain", core.HookCall{Args: map[string]string{"command": "tar", "env": `{"TAR_OPTIONS": "--to-command=sh"}`}}, "TAR_OPTIONS"},
		{"an environment that loads code", core.HookCall{Args: map[string]string{"command": "ls", "env": `{"LD_PRELOAD": "/tmp/x.so"}`}}, "LD_PRELOAD"},
		{"PATH from the chain", core.HookCall{Args: map[string]string{"command": "ls", "env": `{"PATH": "."}`}}, "PATH"},
		{"GIT_ variables", core.HookCall{Args: map[string]string{"command": "ls", "env": `{"GIT_SSH_COMMAND": "sh"}`}}, "GIT_SSH_COMMAND"},
		{"a cwd outside", modelCall(map[string]any{"command": "ls", "cwd": ".."}), "outside"},
		{"a cwd through a symlink", modelCall(map[string]any{"command": "ls", "cwd": "etc"}), "outside"},
		{"an absolute cwd outside", modelCall(map[string]any{"command": "ls", "cwd": "/"}), "outside"},
		{"a timeout past the limit", modelCall(map[string]any{"command": "ls", "timeout": "1h"}), "timeout"},
		{"no command", modelCall(map[string]any{}), "command"},
		{"args that are not strings", modelCall(map[string]any{"command": "ls", "args": []any{map[string]any{}}}), "args[0]"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.Call(context.Background(), tt.call)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one about %q", err, tt.want)
			}
			if c := core.ErrorCode(err); c != core.EFORBIDDEN && c != core.EINVALID {
				t.Errorf("code %s, want forbidden or invalid", c)
			}
		})
	}
	literal := []struct {
		name string
		args []any
	}{
		{"a shell line as an argument", []any{"; rm " + canary}},
		{"a command substitution", []any{"$(rm " + canary + ")"}},
		{"backticks and a pipe", []any{"`rm " + canary + "` | sh"}},
	}
	for _, tt := range literal {
		t.Run(tt.name, func(t *testing.T) {
			out, err := h.Call(context.Background(), modelCall(map[string]any{"command": "echo", "args": tt.args}))
			if err != nil {
				t.Fatal(err)
			}
			if r := result(t, out); !r.Success || r.Stdout != tt.args[0].(string)+"\n" {
				t.Errorf("echo printed %q (%+v), want its argument as it was", r.Stdout, r)
			}
		})
	}
	t.Run("safe options that look like refused ones", func(t *testing.T) {
		for _, args := range [][]any{{"-tf", "nofile.tar", "--checkpoint=10"}, {"-tfFoo.tar"}} {
			_, err := h.Call(context.Background(), modelCall(map[string]any{"command": "tar", "args": args}))
			if err != nil {
				t.Errorf("tar %v: %v, want it to run", args, err)
			}
		}
	})
	t.Run("a clean environment", func(t *testing.T) {
		out, err := h.Call(context.Background(), modelCall(map[string]any{"command": "cat", "args": []any{"/proc/self/environ"}}))
		if err != nil {
			t.Fatal(err)
		}
		r := result(t, out)
		if strings.Contains(r.Stdout, "hunter2") || !strings.Contains(r.Stdout, "PATH=/usr/local/bin:/usr/bin:/bin") {
			t.Errorf("the program's environment: %q", r.Stdout)
		}
	})
	if b, err := os.ReadFile(canary); err != nil || string(b) != "alive" {
		t.Errorf("the canary: %q, %v", b, err)
	}
}

func TestPolicy(t *testing.T) {
	dir, _ := workspace(t)
	for _, tt := range []struct {
		name   string
		policy localexec.Policy
		want   string
	}{
		{"no allow list", localexec.Policy{WorkDir: dir}, "allow list"},
		{"an interpreter", localexec.Policy{AllowedCommands: []string{"python3"}, WorkDir: dir}, "python3"},
		{"a shell", localexec.Policy{AllowedCommands: []string{"ls", "sh"}, WorkDir: dir}, `"sh"`},
		{"a wrapper", localexec.Policy{AllowedCommands: []string{"env"}, WorkDir: dir}, "env"},
		{"a package runner", localexec.Policy{AllowedCommands: []string{"npx"}, WorkDir: dir}, "npx"},
		{"a versioned interpreter", localexec.Policy{AllowedCommands: []string{"python3.11"}, WorkDir: dir}, "python3.11"},
		{"git, whose config runs programs", localexec.Policy{AllowedCommands: []string{"git"}, WorkDir: dir}, "git"},
		{"a shell behind a symlink", localexec.Policy{AllowedCommands: []string{filepath.Join(dir, "tool")}, WorkDir: dir}, "runs any program"},
		{"a program that is not there", localexec.Policy{AllowedCommands: []string{"no-such-program"}, WorkDir: dir}, "trusted PATH"},
		{"a relative PATH entry", localexec.Policy{AllowedCommands: []string{"ls"}, WorkDir: dir, Path: []string{"."}}, "not absolute"},
		{"a missing directory", localexec.Policy{AllowedDir: filepath.Join(dir, "nope"), WorkDir: dir}, "allowed directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.policy.Path == nil {
				tt.policy.Path = trustedPath
			}
			_, err := localexec.New(tt.policy)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want an error about %s", err, tt.want)
			}
		})
	}
}

func TestRun(t *testing.T) {
	dir, _ := workspace(t)
	scripts := filepath.Join(dir, "scripts")
	if err := os.Mkdir(scripts, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(scripts, "greet"), "#!/bin/sh\necho \"hi $1 from $(pwd)\"\n", 0o755)
	write(t, filepath.Join(scripts, "spawn"), "#!/bin/sh\nsleep 30 &\necho $! > "+filepath.Join(dir, "child.pid")+"\nwait\n", 0o755)
	big := filepath.Join(dir, "big")
	write(t, big, strings.Repeat("x", 3<<20), 0o644)
	h := newHook(t, localexec.Policy{AllowedCommands: []string{"echo", "cat", "ls", "sleep"}, AllowedDir: scripts, WorkDir: dir})
	ctx := context.Background()

	t.Run("the result has the seed's fields", func(t *testing.T) {
		out, err := h.Call(ctx, modelCall(map[string]any{"command": "echo", "args": []any{"hello", "world"}}))
		if err != nil {
			t.Fatal(err)
		}
		m := out.Data.(map[string]any)
		for _, k := range []string{"exit_code", "stdout", "stderr", "success", "duration_seconds", "command"} {
			if _, ok := m[k]; !ok {
				t.Errorf("no %s in %v", k, m)
			}
		}
		if r := result(t, out); r.ExitCode != 0 || !r.Success || r.Stdout != "hello world\n" || r.Command != "echo hello world" {
			t.Errorf("result %+v", r)
		}
	})
	t.Run("a failing program is a result, not an error", func(t *testing.T) {
		out, err := h.Call(ctx, modelCall(map[string]any{"command": "ls", "args": []any{"/no/such/dir"}}))
		if err != nil {
			t.Fatal(err)
		}
		if r := result(t, out); r.ExitCode == 0 || r.Success || r.Stderr == "" || r.Error == "" {
			t.Errorf("result %+v", r)
		}
	})
	t.Run("stdin from the model", func(t *testing.T) {
		out, err := h.Call(ctx, modelCall(map[string]any{"command": "cat", "stdin": "abc"}))
		if err != nil || result(t, out).Stdout != "abc" {
			t.Errorf("cat: %v %v", out.Data, err)
		}
	})
	t.Run("a hook task's static args and input", func(t *testing.T) {
		out, err := h.Call(ctx, core.HookCall{Args: map[string]string{"command": "cat"}, Input: core.String("from the input")})
		if err != nil || result(t, out).Stdout != "from the input" {
			t.Errorf("cat: %v %v", out.Data, err)
		}
		out, err = h.Call(ctx, core.HookCall{Args: map[string]string{"command": "/usr/bin/echo", "args": `["a b", "c"]`}})
		if err != nil || result(t, out).Stdout != "a b c\n" {
			t.Errorf("echo with a JSON list: %v %v", out.Data, err)
		}
		out, err = h.Call(ctx, core.HookCall{Input: core.String("echo from the line")})
		if err != nil || result(t, out).Stdout != "from the line\n" {
			t.Errorf("the input as the command line: %v %v", out.Data, err)
		}
	})
	t.Run("a script under the allowed directory, in a cwd inside", func(t *testing.T) {
		out, err := h.Call(ctx, modelCall(map[string]any{"command": "scripts/greet", "args": []any{"bob"}, "cwd": "."}))
		if err != nil {
			t.Fatal(err)
		}
		if r := result(t, out); r.Stdout != "hi bob from "+dir+"\n" {
			t.Errorf("greet: %+v", r)
		}
		out, err = h.Call(ctx, modelCall(map[string]any{"command": "ls", "cwd": "sub"}))
		if err != nil || !result(t, out).Success {
			t.Errorf("ls in sub: %v %v", out.Data, err)
		}
	})
	t.Run("output is capped", func(t *testing.T) {
		out, err := h.Call(ctx, modelCall(map[string]any{"command": "cat", "args": []any{big}}))
		if err != nil {
			t.Fatal(err)
		}
		r := result(t, out)
		if len(r.Stdout) > localexec.MaxOutput+100 || !strings.Contains(r.Stdout, "more bytes cut") {
			t.Errorf("stdout of %d bytes, ending %q", len(r.Stdout), r.Stdout[max(0, len(r.Stdout)-60):])
		}
	})
	t.Run("a timeout kills the program and what it started", func(t *testing.T) {
		out, err := h.Call(ctx, modelCall(map[string]any{"command": "scripts/spawn", "timeout": "300ms"}))
		if err != nil {
			t.Fatal(err)
		}
		r := result(t, out)
		if r.Success || !strings.Contains(r.Error, "killed") || r.DurationSeconds > 20 {
			t.Errorf("result %+v", r)
		}
		b, err := os.ReadFile(filepath.Join(dir, "child.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid := strings.TrimSpace(string(b))
		// The kill is a signal: give the kernel a moment to deliver it.
		var stat []byte
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if stat, err = os.ReadFile("/proc/" + pid + "/stat"); err != nil || strings.Contains(string(stat), ") Z ") {
				return
			}
		}
		t.Errorf("the spawned sleep %s still runs 10 s after the kill: %s", pid, stat)
	})
	t.Run("the tool tells the model what it may run", func(t *testing.T) {
		tools, _ := h.Tools(ctx)
		if len(tools) != 1 || !strings.Contains(tools[0].Function.Description, "echo, cat, ls, sleep") || tools[0].Function.Parameters["properties"].(map[string]any)["shell"] != nil {
			t.Errorf("tool %+v", tools)
		}
	})
}

func TestShellWhenAllowed(t *testing.T) {
	dir, _ := workspace(t)
	h := newHook(t, localexec.Policy{AllowedCommands: []string{"echo"}, AllowShell: true, WorkDir: dir})
	out, err := h.Call(context.Background(), modelCall(map[string]any{"command": "echo a | tr a b", "shell": true}))
	if err != nil {
		t.Fatal(err)
	}
	if r := result(t, out); r.Stdout != "b\n" {
		t.Errorf("the shell line gave %+v", r)
	}
}
