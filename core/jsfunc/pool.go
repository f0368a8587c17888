package jsfunc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PoolConfig configures a Pool.
type PoolConfig struct {
	// Command starts a child: a program that calls Serve on its standard
	// input and output (`stepwise js-worker`). Required.
	Command []string
	// Size is the most children at once (default 2).
	Size int
	// MaxRSS kills a child whose resident memory passes it (default 512
	// MiB); the run fails with ErrCrashed and the next run gets a new
	// child.
	MaxRSS uint64
	// Env is the children's environment; nil means an empty one, so that
	// no credential of the parent reaches user code.
	Env []string
}

// Pool runs scripts in child processes: a script that exhausts memory,
// hangs in a native built-in or crashes the runtime kills its child, not
// the server. Children are reused, one run at a time each.
type Pool struct {
	cfg  PoolConfig
	idle chan *child
	sem  chan struct{}
	ids  uint64
	mu   sync.Mutex
}

// NewPool returns a pool; children start on first use.
func NewPool(cfg PoolConfig) *Pool {
	if cfg.Size <= 0 {
		cfg.Size = 2
	}
	if cfg.MaxRSS == 0 {
		cfg.MaxRSS = 512 << 20
	}
	if cfg.Env == nil {
		cfg.Env = []string{}
	}
	return &Pool{cfg: cfg, idle: make(chan *child, cfg.Size), sem: make(chan struct{}, cfg.Size)}
}

// child is one running child process.
type child struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	enc  *json.Encoder
	out  *bufio.Reader
	dead chan struct{}
}

func (p *Pool) start() (*child, error) {
	if len(p.cfg.Command) == 0 {
		return nil, errors.New("jsfunc: the pool has no command")
	}
	cmd := exec.Command(p.cfg.Command[0], p.cfg.Command[1:]...)
	cmd.Env = p.cfg.Env
	cmd.Stderr = io.Discard
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("jsfunc: start a child: %w", err)
	}
	c := &child{cmd: cmd, in: in, enc: json.NewEncoder(in), out: bufio.NewReaderSize(out, 64<<10), dead: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.dead)
	}()
	return c, nil
}

// kill ends a child for good.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	_ = c.in.Close()
	<-c.dead
}

// Close ends the idle children.
func (p *Pool) Close() error {
	for {
		select {
		case c := <-p.idle:
			c.kill()
		default:
			return nil
		}
	}
}

// get takes an idle child or starts one, waiting for a free slot.
func (p *Pool) get(ctx context.Context) (*child, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for {
		select {
		case c := <-p.idle:
			select {
			case <-c.dead:
				continue
			default:
				return c, nil
			}
		default:
			c, err := p.start()
			if err != nil {
				<-p.sem
			}
			return c, err
		}
	}
}

func (p *Pool) put(c *child, healthy bool) {
	if healthy {
		p.idle <- c
	} else {
		go c.kill()
	}
	<-p.sem
}

// Run runs a request in a child. Builtin calls come back to host here, in
// the parent. The child is killed when its script runs twice its budget
// (plus a second) not counting builtins, or uses that much CPU time, when
// its memory passes MaxRSS, or when ctx ends.
func (p *Pool) Run(ctx context.Context, req ChildRequest, host Host) Outcome {
	started := time.Now()
	c, err := p.get(ctx)
	if err != nil {
		return Outcome{Err: err, Started: started}
	}
	p.mu.Lock()
	p.ids++
	id := p.ids
	p.mu.Unlock()
	limits := req.Limits.withDefaults()
	out, healthy := p.run(ctx, c, id, req, limits, host)
	// A child that has grown past three quarters of its limit (the
	// runtimes it keeps, tenants' alike) is retired between runs, so that
	// its growth does not kill a run of someone else's midway.
	if healthy && residentBytes(c.cmd.Process.Pid) > p.cfg.MaxRSS/4*3 {
		healthy = false
	}
	p.put(c, healthy)
	if out.Started.IsZero() {
		out.Started = started
	}
	if out.Duration == 0 {
		out.Duration = time.Since(started)
	}
	return out
}

func (p *Pool) run(ctx context.Context, c *child, id uint64, req ChildRequest, limits Limits, host Host) (Outcome, bool) {
	msgs := make(chan message)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			m, err := readMessage(c.out)
			if err != nil {
				readErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-stop:
				return
			}
			if m.Op == "done" {
				return
			}
		}
	}()
	if err := c.enc.Encode(message{Op: "run", ID: id, Name: req.Name, Source: req.Source, Globals: req.Globals, Entry: req.Entry,
		Arg: req.Arg, Builtins: req.Builtins, Limits: &limits, Reuse: req.ReuseKey}); err != nil {
		c.kill()
		return Outcome{Err: fmt.Errorf("%w: %v", ErrCrashed, err)}, false
	}
	grace := 2*limits.Timeout + time.Second
	timer := time.NewTimer(grace)
	defer timer.Stop()
	// CPU time is the child's own: the script and its runtime's collector,
	// not the parent's builtins.
	cpuStart := cpuTime(c.cmd.Process.Pid)
	watch := time.NewTicker(10 * time.Millisecond)
	defer watch.Stop()
	crash := func(why string) (Outcome, bool) {
		c.kill()
		return Outcome{Err: fmt.Errorf("%w: %s", ErrCrashed, why)}, false
	}
	for {
		select {
		case m := <-msgs:
			switch m.Op {
			case "call":
				timer.Stop()
				res, err := callHost(ctx, host, m.Name, m.Args)
				reply := message{Op: "reply", ID: id, Result: res}
				if err != nil {
					reply.Error = err.Error()
				}
				if err := c.enc.Encode(reply); err != nil {
					return crash("the child stopped reading: " + err.Error())
				}
				timer.Reset(grace)
			case "done":
				out := Outcome{Result: m.Result, Logs: m.Logs, Started: m.Started, Duration: time.Duration(m.Duration)}
				if m.Error != "" {
					out.Err = errors.New(m.Error)
					if m.Interrupted {
						out.Err = fmt.Errorf("%w: %s", ErrInterrupted, strings.TrimPrefix(m.Error, ErrInterrupted.Error()+": "))
					}
				}
				return out, true
			default:
				return crash(fmt.Sprintf("the child sent %q", m.Op))
			}
		case err := <-readErr:
			return crash("it ended: " + err.Error())
		case <-timer.C:
			return crash(fmt.Sprintf("the script ran past twice its %s budget inside a built-in that cannot be interrupted", limits.Timeout))
		case <-watch.C:
			pid := c.cmd.Process.Pid
			if rss := residentBytes(pid); rss > p.cfg.MaxRSS {
				return crash(fmt.Sprintf("the script used %d MiB, more than %d MiB", rss>>20, p.cfg.MaxRSS>>20))
			}
			if used := cpuTime(pid) - cpuStart; used > grace {
				return crash(fmt.Sprintf("the script used %s of CPU time, more than twice its %s budget", used.Round(time.Millisecond), limits.Timeout))
			}
		case <-ctx.Done():
			return crash(context.Cause(ctx).Error())
		}
	}
}

// clockTicks is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTicks = 100

// cpuTime is the CPU time a process has used, user and system, 0 where
// /proc cannot tell.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command's name, which may hold spaces.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	user, err1 := strconv.ParseInt(f[11], 10, 64)
	sys, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(user+sys) * time.Second / clockTicks
}

// residentBytes is a process's resident memory, 0 where /proc cannot
// tell.
func residentBytes(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}
