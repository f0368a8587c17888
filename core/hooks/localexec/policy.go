// Package localexec is the local_exec hook: it runs a program on the
// machine stepwise runs on, for `stepwise run` only and only when the user
// turns it on with an allow list. A program is started directly, never
// through a shell unless the user allowed one, with its arguments as a
// list, a clean environment, a working directory inside the one the user
// named, a timeout that kills its whole process group, and its output
// capped.
//
// The checks follow the known ways around command allow lists: the deny
// list first; programs resolved on a fixed list of absolute PATH entries
// and through their symlinks, then compared by real path and invoked name;
// interpreters, package runners and exec wrappers refused on the allow
// list (allowing one allows any program); the arguments that make an
// allowed program run another (find -exec, git -c, tar --to-command, ...)
// refused.
package localexec

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Limits of a run.
const (
	// DefaultTimeout bounds a run that sets no timeout.
	DefaultTimeout = 60 * time.Second
	// MaxTimeout is the longest timeout a run may ask for, unless the
	// policy sets a longer one.
	MaxTimeout = 10 * time.Minute
	// MaxOutput is how much of each of stdout and stderr is kept.
	MaxOutput = 1 << 20
)

// Policy is what the user allowed.
type Policy struct {
	// AllowedCommands are programs that may run, by name (looked up on
	// the trusted PATH) or absolute path.
	AllowedCommands []string
	// AllowedDir lets any program under it run (scripts of the project).
	AllowedDir string
	// DeniedCommands never run, by name or path, even when allowed;
	// checked first.
	DeniedCommands []string
	// AllowShell lets a run ask for /bin/sh -c: the allow list cannot
	// constrain what a shell line does, so this lets the model run
	// anything the user can.
	AllowShell bool
	// WorkDir is where programs run and what their cwd must stay inside
	// (default: the working directory).
	WorkDir string
	// Timeout is the default and longest timeout of a run (default
	// DefaultTimeout, at most MaxTimeout unless set higher here).
	Timeout time.Duration
	// Path is the trusted search path, absolute entries only (default:
	// the absolute entries of $PATH).
	Path []string
}

// neverAllowed are programs that run other programs or code given in
// their arguments: allowing one would allow everything.
var neverAllowed = []string{
	"sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "ash", "busybox", "toybox",
	"env", "xargs", "nice", "nohup", "timeout", "sudo", "su", "doas", "chroot", "setsid", "stdbuf", "time", "watch", "strace", "ltrace", "gdb", "unshare", "nsenter", "flock",
	"python", "python2", "python3", "perl", "ruby", "node", "nodejs", "deno", "bun", "php", "lua", "luajit", "tclsh", "wish", "Rscript", "julia", "java", "jshell", "awk", "gawk", "mawk", "nawk", "sed", "vim", "vi", "nvim", "emacs", "ed", "ex",
	"npm", "npx", "pnpm", "yarn", "pip", "pip3", "pipx", "uv", "uvx", "poetry", "make", "cmake", "ninja", "cargo", "go", "gem", "bundle", "composer", "mvn", "gradle", "docker", "podman", "kubectl", "ssh", "scp", "rsync",
	// git runs what its configuration, aliases and hooks name
	// (alias.x=!cmd, core.pager, core.fsmonitor, rebase -x, bisect run).
	"git",
}

// runsAnything reports whether a program's name is on neverAllowed, a
// versioned name (python3.11, perl5.36, node18) included.
func runsAnything(name string) bool {
	base := filepath.Base(name)
	return slices.Contains(neverAllowed, base) || slices.Contains(neverAllowed, strings.TrimRight(base, "0123456789.-"))
}

// compiled is a Policy ready to check runs against.
type compiled struct {
	Policy
	// allowed maps the real path of each allowed program to the names it
	// may be invoked by.
	allowed map[string][]string
	denied  []string
	// deniedReal are the real paths of the denied programs that exist.
	deniedReal []string
	dir        string
	workDir    string
	path       []string
}

// compile checks a policy and resolves its programs.
func compile(p Policy) (*compiled, error) {
	c := &compiled{Policy: p, allowed: map[string][]string{}}
	if len(p.AllowedCommands) == 0 && p.AllowedDir == "" {
		return nil, fmt.Errorf("local_exec: set an allow list (allowed commands and/or an allowed directory); without one no command may run")
	}
	c.path = p.Path
	if len(c.path) == 0 {
		for _, d := range filepath.SplitList(os.Getenv("PATH")) {
			if filepath.IsAbs(d) {
				c.path = append(c.path, d)
			}
		}
	}
	for _, d := range c.path {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("local_exec: PATH entry %q is not absolute", d)
		}
	}
	for _, d := range p.DeniedCommands {
		if d = strings.TrimSpace(d); d != "" {
			c.denied = append(c.denied, d)
		}
	}
	for _, d := range c.denied {
		if _, real, err := c.resolve(d, ""); err == nil {
			c.deniedReal = append(c.deniedReal, real)
		}
	}
	for _, name := range p.AllowedCommands {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if err := asciiName(name); err != nil {
			return nil, fmt.Errorf("local_exec: allowed command %q: %w", name, err)
		}
		if runsAnything(name) {
			return nil, fmt.Errorf("local_exec: %q cannot be on the allow list: it runs any program or code it is given, so allowing it would allow everything", name)
		}
		invoked, real, err := c.resolve(name, "")
		if err != nil {
			return nil, fmt.Errorf("local_exec: allowed command %q: %w", name, err)
		}
		if runsAnything(real) {
			return nil, fmt.Errorf("local_exec: allowed command %q is %s, which runs any program it is given", name, real)
		}
		c.allowed[real] = append(c.allowed[real], filepath.Base(invoked))
	}
	if p.AllowedDir != "" {
		dir, err := realDir(p.AllowedDir)
		if err != nil {
			return nil, fmt.Errorf("local_exec: allowed directory: %w", err)
		}
		c.dir = dir
	}
	wd := p.WorkDir
	if wd == "" {
		var err error
		if wd, err = os.Getwd(); err != nil {
			return nil, fmt.Errorf("local_exec: working directory: %w", err)
		}
	}
	workDir, err := realDir(wd)
	if err != nil {
		return nil, fmt.Errorf("local_exec: working directory: %w", err)
	}
	c.workDir = workDir
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	return c, nil
}

func realDir(d string) (string, error) {
	abs, err := filepath.Abs(d)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", d)
	}
	return real, nil
}

// asciiName refuses names that could look like another: only printable
// ASCII without spaces.
func asciiName(s string) error {
	for _, r := range s {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("only printable ASCII without spaces is accepted in a program's name")
		}
	}
	return nil
}

// resolve finds a program: a name on the trusted path, an absolute path,
// or a path relative to cwd. It returns the path found and its real path
// (symlinks followed).
func (c *compiled) resolve(name, cwd string) (invoked, real string, err error) {
	switch {
	case filepath.IsAbs(name):
		invoked = filepath.Clean(name)
	case strings.ContainsRune(name, '/'):
		if cwd == "" {
			return "", "", fmt.Errorf("a relative path needs a directory")
		}
		invoked = filepath.Join(cwd, name)
	default:
		for _, d := range c.path {
			p := filepath.Join(d, name)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				invoked = p
				break
			}
		}
		if invoked == "" {
			return "", "", fmt.Errorf("%q is not on the trusted PATH", name)
		}
	}
	real, err = filepath.EvalSymlinks(invoked)
	if err != nil {
		return "", "", fmt.Errorf("%q: %w", name, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", "", err
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return "", "", fmt.Errorf("%s is not an executable file", real)
	}
	return invoked, real, nil
}

// isDenied reports whether any of paths is on the deny list: a denied
// name matches a path's basename, a denied path the path itself or its
// real path.
func (c *compiled) isDenied(paths ...string) bool {
	for _, p := range paths {
		for _, d := range c.denied {
			if strings.ContainsRune(d, '/') && filepath.Clean(d) == p || !strings.ContainsRune(d, '/') && filepath.Base(p) == d {
				return true
			}
		}
		if slices.Contains(c.deniedReal, p) {
			return true
		}
	}
	return false
}

// program checks name against the policy and returns the path to run.
func (c *compiled) program(name, cwd string) (string, error) {
	if err := asciiName(name); err != nil {
		return "", fmt.Errorf("command %q: %w", name, err)
	}
	if c.isDenied(name) {
		return "", fmt.Errorf("command %q is denied", name)
	}
	invoked, real, err := c.resolve(name, cwd)
	if err != nil {
		return "", fmt.Errorf("command %w", err)
	}
	if c.isDenied(invoked, real) {
		return "", fmt.Errorf("command %q is denied (it is %s)", name, real)
	}
	if names, ok := c.allowed[real]; ok && slices.Contains(names, filepath.Base(invoked)) {
		return invoked, nil
	}
	if c.dir != "" && within(c.dir, real) {
		if runsAnything(real) {
			return "", fmt.Errorf("command %q is %s, which runs any program it is given", name, real)
		}
		return real, nil
	}
	return "", fmt.Errorf("command %q is not on the allow list (%s)", name, c.describe())
}

// within reports whether path is dir or below it.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// describe lists what may run, for the model and for errors.
func (c *compiled) describe() string {
	var names []string
	for _, n := range c.AllowedCommands {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	s := "allowed: " + strings.Join(names, ", ")
	if len(names) == 0 {
		s = "allowed: no named commands"
	}
	if c.dir != "" {
		s += "; and any program under " + c.dir
	}
	return s
}

// cwd resolves a run's working directory, which must stay inside the
// policy's.
func (c *compiled) cwd(dir string) (string, error) {
	if dir == "" {
		return c.workDir, nil
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(c.workDir, dir)
	}
	real, err := realDir(dir)
	if err != nil {
		return "", fmt.Errorf("cwd: %w", err)
	}
	if !within(c.workDir, real) {
		return "", fmt.Errorf("cwd: %s is outside %s", dir, c.workDir)
	}
	return real, nil
}
