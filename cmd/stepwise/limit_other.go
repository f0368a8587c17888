//go:build !unix

package main

import "runtime/debug"

// limitSelf bounds a function child's heap; the parent's memory watch is
// the rest of the bound here.
func limitSelf() { debug.SetMemoryLimit(384 << 20) }
