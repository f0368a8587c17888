//go:build unix

package main

import (
	"runtime/debug"
	"syscall"
)

// limitSelf bounds a function child: a soft heap goal for the collector,
// a cap on address space as the backstop for one huge native allocation
// (Go reserves address space lazily, so 4 GiB leaves room for the
// runtime), few open files (it needs its pipes only).
func limitSelf() {
	debug.SetMemoryLimit(384 << 20)
	_ = syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: 4 << 30, Max: 4 << 30})
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 64, Max: 64})
}
