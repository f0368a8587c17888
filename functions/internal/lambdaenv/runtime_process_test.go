package lambdaenv_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/infra/awsmoto"
)

// bootstrap is a function's bootstrap running as Lambda runs it: one
// process, in the directory of its binary (Lambda's /var/task), with the
// environment Lambda gives it, polling its own Runtime API.
type bootstrap struct {
	rt       *runtimeAPI
	cmd      *exec.Cmd
	started  time.Time
	exited   chan struct{}
	stderr   *lockedBuffer
	stopOnce sync.Once
}

// startBootstrap starts bin with the variables Lambda sets for a function
// plus vars (a function's own configuration), and stops it when tb ends.
func startBootstrap(tb testing.TB, bin string, vars map[string]string) *bootstrap {
	tb.Helper()
	rt := startRuntimeAPI(tb)
	env := map[string]string{
		"AWS_LAMBDA_RUNTIME_API":          rt.addr(),
		"AWS_LAMBDA_FUNCTION_NAME":        "stepwise",
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/stepwise",
		"AWS_LAMBDA_LOG_STREAM_NAME":      "2024/03/13/[$LATEST]0123456789abcdef",
		"AWS_REGION":                      awsmoto.Region,
		"AWS_DEFAULT_REGION":              awsmoto.Region,
		"AWS_ACCESS_KEY_ID":               "testing",
		"AWS_SECRET_ACCESS_KEY":           "testing",
		"LAMBDA_TASK_ROOT":                filepath.Dir(bin),
		"PATH":                            "/usr/local/bin:/usr/bin/:/bin:/opt/bin",
	}
	for k, v := range vars {
		env[k] = v
	}
	p := &bootstrap{rt: rt, cmd: exec.Command(bin), exited: make(chan struct{}), stderr: &lockedBuffer{}}
	p.cmd.Dir = filepath.Dir(bin)
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stderr = p.stderr
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	tb.Cleanup(func() {
		p.stop()
		if tb.Failed() {
			tb.Logf("bootstrap stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

// stop kills the process, as Lambda ends an execution environment, and
// closes its Runtime API.
func (p *bootstrap) stop() {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		p.rt.close()
	})
}

// firstPoll waits for the process to ask for its first invocation, and
// returns how long after its start it did: its cold start, as far as the
// function's own code goes.
func (p *bootstrap) firstPoll(tb testing.TB) time.Duration {
	tb.Helper()
	select {
	case <-p.rt.polled:
		return p.rt.firstPoll.Sub(p.started)
	case <-p.exited:
		tb.Fatalf("the bootstrap exited before it asked for an invocation (%v):\n%s", p.cmd.ProcessState, p.stderr.String())
	case <-time.After(time.Minute):
		tb.Fatalf("no GET .../invocation/next within a minute")
	}
	return 0
}

// invoke hands payload to the function as invocation id (payload is
// marshalled to JSON; a json.RawMessage goes as it is) and waits for what
// the function posts back.
func (p *bootstrap) invoke(t *testing.T, id string, payload any, timeout time.Duration) result {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	p.rt.events <- invocation{id: id, payload: b, deadline: time.Now().Add(timeout)}
	select {
	case res := <-p.rt.results:
		return res
	case <-p.exited:
		t.Fatalf("the bootstrap exited during invocation %s (%v)", id, p.cmd.ProcessState)
	case <-time.After(timeout + 30*time.Second):
		t.Fatalf("no answer to invocation %s", id)
	}
	return result{}
}

// lockedBuffer is a process's stderr, read while the process may still
// be writing it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
