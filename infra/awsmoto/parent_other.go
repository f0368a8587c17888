//go:build !linux

package awsmoto

import "os/exec"

// stopWithParent does nothing where the kernel cannot tie a child's life
// to its parent's: there a test binary that dies without its cleanups
// leaves the emulator running.
func stopWithParent(*exec.Cmd) {}
