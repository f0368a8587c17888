//go:build unix

package localexec

import (
	"os/exec"
	"syscall"
	"time"
)

// isolate starts the program in a process group of its own, so that a
// kill reaches what it started too.
func isolate(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Output pipes held open by an orphan do not hold the run.
	cmd.WaitDelay = 2 * time.Second
}

// kill ends the program's whole process group.
func kill(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
