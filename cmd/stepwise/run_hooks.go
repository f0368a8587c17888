package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks"
	"github.com/stepwise-run/stepwise/core/hooks/localexec"
	"github.com/stepwise-run/stepwise/core/hooks/remote"
	"github.com/stepwise-run/stepwise/core/jsfunc"
	"github.com/stepwise-run/stepwise/core/seal"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// localExecOptions are the local_exec settings of `stepwise run`.
type localExecOptions struct {
	enabled    bool
	allowedDir string
	allowed    csvList
	denied     csvList
	allowShell bool
	timeout    time.Duration
}

// csvList is a list given as comma-separated text (a flag, or a YAML
// string) or as a YAML list.
type csvList []string

func (l *csvList) String() string { return strings.Join(*l, ",") }

func (l *csvList) Set(s string) error {
	*l = nil
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

// UnmarshalYAML accepts "a,b" and [a, b].
func (l *csvList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return l.Set(n.Value)
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*l = list
	return nil
}

// mcpServerConfig is one entry of config.yaml's mcp_servers: a command
// spoken to over stdio, or a streamable HTTP URL.
type mcpServerConfig struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	URL     string   `yaml:"url"`
	// Headers' values may name environment variables as ${NAME}, so that
	// tokens stay out of the file.
	Headers      map[string]string `yaml:"headers"`
	TimeoutMs    int64             `yaml:"timeout_ms"`
	AllowPrivate bool              `yaml:"allow_private"`
}

// addLocalExecFlags defines the local_exec flags (the reference CLI's
// names).
func addLocalExecFlags(fs *flag.FlagSet, o *localExecOptions) {
	fs.BoolVar(&o.enabled, "enable-local-exec", false, "register the local_exec hook, which runs programs on this machine (needs an allow list)")
	fs.StringVar(&o.allowedDir, "local-exec-allowed-dir", "", "local_exec may run any program under this directory")
	fs.Var(&o.allowed, "local-exec-allowed-commands", "comma-separated programs local_exec may run, by name or absolute path")
	fs.Var(&o.denied, "local-exec-denied-commands", "comma-separated programs local_exec never runs, checked first")
	fs.BoolVar(&o.allowShell, "local-exec-allow-shell", false, "let local_exec run /bin/sh -c lines, which the allow list cannot constrain")
	fs.DurationVar(&o.timeout, "local-exec-timeout", localexec.DefaultTimeout, "default and longest run of a local_exec program")
}

// mergeLocalExec fills what no flag set from the config file.
func mergeLocalExec(o *localExecOptions, cfg *fileConfig, set map[string]bool) error {
	if !set["enable-local-exec"] {
		o.enabled = cfg.EnableLocalExec
	}
	if !set["local-exec-allowed-dir"] {
		o.allowedDir = cfg.LocalExecAllowedDir
	}
	if !set["local-exec-allowed-commands"] {
		o.allowed = cfg.LocalExecAllowedCommands
	}
	if !set["local-exec-denied-commands"] {
		o.denied = cfg.LocalExecDeniedCommands
	}
	if !set["local-exec-allow-shell"] {
		o.allowShell = cfg.LocalExecAllowShell
	}
	if !set["local-exec-timeout"] && cfg.LocalExecTimeout != "" {
		d, err := time.ParseDuration(cfg.LocalExecTimeout)
		if err != nil || d <= 0 {
			return usagef("config local_exec_timeout: %q is not a positive duration", cfg.LocalExecTimeout)
		}
		o.timeout = d
	}
	return nil
}

// runTools builds the hooks of `stepwise run`: echo, print, webhook and
// js_sandbox always, local_exec when enabled, and the config's MCP
// servers. close ends the MCP servers' sessions and processes.
func runTools(ctx context.Context, o *runOptions, e env) (tools core.Tools, close func(), err error) {
	builtins := []hooks.Hook{hooks.Echo(), hooks.Print(), hooks.Webhook(hooks.WebhookConfig{}), hooks.JS(jsfunc.New(), jsfunc.Limits{})}
	if o.localExec.enabled {
		dir := o.localExec.allowedDir
		if dir != "" && !filepath.IsAbs(dir) {
			dir = filepath.Join(e.workdir, dir)
		}
		h, err := localexec.New(localexec.Policy{
			AllowedCommands: o.localExec.allowed, AllowedDir: dir, DeniedCommands: o.localExec.denied,
			AllowShell: o.localExec.allowShell, WorkDir: e.workdir, Timeout: o.localExec.timeout,
		})
		if err != nil {
			return nil, nil, usageError{err}
		}
		builtins = append(builtins, h)
	}
	if len(o.mcpServers) == 0 {
		return hooks.NewRegistry(nil, builtins...), func() {}, nil
	}
	// Header values are sealed in the run's memory like the server's;
	// the key lives as long as the run.
	box, err := seal.New(seal.GenerateKey())
	if err != nil {
		return nil, nil, err
	}
	reg, src := remote.NewRegistry(remote.SourceConfig{Store: mem.New(), Sealer: box, AllowStdio: true}, builtins...)
	for i, s := range o.mcpServers {
		headers := map[string]string{}
		for k, v := range s.Headers {
			headers[k] = os.Expand(v, e.getenv)
		}
		if _, err := src.MCPServers().Create(ctx, core.DefaultTenant, remote.Hook{
			Name: s.Name, EndpointURL: s.URL, Command: s.Command, Headers: headers, TimeoutMs: s.TimeoutMs, AllowPrivate: s.AllowPrivate,
		}); err != nil {
			_ = src.Close()
			return nil, nil, usagef("config mcp_servers[%d] (%s): %s", i, s.Name, err)
		}
	}
	return reg, func() { _ = src.Close() }, nil
}

// describeLocalExec is the line -steps prints about local_exec, so the
// user sees what a chain may run.
func describeLocalExec(o localExecOptions) string {
	if !o.enabled {
		return ""
	}
	return fmt.Sprintf("stepwise: local_exec enabled: commands %v, directory %q, denied %v, shell %v", []string(o.allowed), o.allowedDir, []string(o.denied), o.allowShell)
}
