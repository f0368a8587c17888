//go:build !unix

package localexec

import (
	"os/exec"
	"time"
)

// isolate has no process groups to use here.
func isolate(cmd *exec.Cmd) { cmd.WaitDelay = 2 * time.Second }

// kill ends the program.
func kill(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}
