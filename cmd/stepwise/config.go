package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// configDir is the folder stepwise looks for in the working directory and
// then in the home directory.
const configDir = ".stepwise"

// fileConfig is .stepwise/config.yaml. Every key is optional; a flag given
// on the command line wins over the file.
type fileConfig struct {
	DefaultChain        string       `yaml:"default_chain"`
	Ollama              string       `yaml:"ollama"`
	OpenAIBaseURL       string       `yaml:"openai_base_url"`
	Model               string       `yaml:"model"`
	Context             int          `yaml:"context"`
	ExtraModels         []extraModel `yaml:"extra_models"`
	TemplateVarsFromEnv []string     `yaml:"template_vars_from_env"`
	Steps               bool         `yaml:"steps"`
	Trace               bool         `yaml:"trace"`
	Tracing             bool         `yaml:"tracing"` // the reference CLI's name for trace
	Raw                 bool         `yaml:"raw"`
	Timeout             string       `yaml:"timeout"`
	// local_exec, with the reference CLI's keys.
	EnableLocalExec          bool    `yaml:"enable_local_exec"`
	LocalExecAllowedDir      string  `yaml:"local_exec_allowed_dir"`
	LocalExecAllowedCommands csvList `yaml:"local_exec_allowed_commands"`
	LocalExecDeniedCommands  csvList `yaml:"local_exec_denied_commands"`
	LocalExecAllowShell      bool    `yaml:"local_exec_allow_shell"`
	LocalExecTimeout         string  `yaml:"local_exec_timeout"`
	// MCPServers are tool sources for the run's chains.
	MCPServers []mcpServerConfig `yaml:"mcp_servers"`

	// dir is the .stepwise folder the file was found in ("" for none).
	dir string
}

// configKeys are the keys config.yaml may hold.
var configKeys = []string{
	"context", "default_chain", "enable_local_exec", "extra_models", "local_exec_allow_shell", "local_exec_allowed_commands",
	"local_exec_allowed_dir", "local_exec_denied_commands", "local_exec_timeout", "mcp_servers", "model", "ollama",
	"openai_base_url", "raw", "steps", "template_vars_from_env", "timeout", "trace", "tracing",
}

// extraModel declares a model besides -model, with its context length and
// capabilities (chat and prompt by default, not embed).
type extraModel struct {
	Name      string `yaml:"name"`
	Context   int    `yaml:"context"`
	CanChat   *bool  `yaml:"can_chat"`
	CanPrompt *bool  `yaml:"can_prompt"`
	CanEmbed  *bool  `yaml:"can_embed"`
}

// loadConfig reads the first .stepwise/config.yaml found in the working
// directory, then in the home directory. No file is not an error.
func loadConfig(e env) (*fileConfig, error) {
	for _, base := range []string{e.workdir, e.homedir} {
		if base == "" {
			continue
		}
		dir := filepath.Join(base, configDir)
		path := filepath.Join(dir, "config.yaml")
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		cfg := &fileConfig{dir: dir}
		var keys map[string]any
		if err := yaml.Unmarshal(data, &keys); err != nil {
			return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		var unknown []string
		for k := range keys {
			if !slices.Contains(configKeys, k) {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return nil, fmt.Errorf("%s: unknown key %q (known: %s)", path, unknown[0], strings.Join(configKeys, ", "))
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true) // also inside extra_models
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		cfg.Trace = cfg.Trace || cfg.Tracing
		return cfg, nil
	}
	return &fileConfig{}, nil
}

// defaultChainPath finds the chain to run when -chain is not given: the
// config's default_chain (relative to its .stepwise folder), else a
// default-chain.json in the config's folder, the working directory's
// .stepwise or the home directory's.
func defaultChainPath(e env, cfg *fileConfig) (string, error) {
	if cfg.DefaultChain != "" {
		p := cfg.DefaultChain
		if !filepath.IsAbs(p) {
			p = filepath.Join(cfg.dir, p)
		}
		return p, nil
	}
	var dirs []string
	if cfg.dir != "" {
		dirs = append(dirs, cfg.dir)
	}
	for _, base := range []string{e.workdir, e.homedir} {
		if base != "" {
			dirs = append(dirs, filepath.Join(base, configDir))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "default-chain.json")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chain given: pass -chain FILE, set default_chain in .stepwise/config.yaml, or create .stepwise/default-chain.json")
}
