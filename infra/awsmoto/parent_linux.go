//go:build linux

package awsmoto

import (
	"os/exec"
	"syscall"
)

// stopWithParent has the kernel kill the emulator when the test binary
// dies without running its cleanups (a test timeout panics past them), so
// that no moto_server outlives the tests that started it.
func stopWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
