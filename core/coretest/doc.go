// Package coretest holds the conformance suites every adapter of core's
// ports must pass: ExecutionStoreSuite for core.ExecutionStore,
// RecordStoreSuite for core.RecordStore and QueueSuite for core.Queue.
// Adapters call them from their own tests:
//
//	func TestStore(t *testing.T) {
//		coretest.ExecutionStoreSuite(t, func(t *testing.T) core.ExecutionStore { return mem.New() })
//	}
//
// It is imported only from _test.go files.
package coretest
