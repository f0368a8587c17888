// Package coretest holds the conformance suites every adapter of core's
// ports must pass: ExecutionStoreSuite for core.ExecutionStore,
// RecordStoreSuite for core.RecordStore, CounterSuite for core.Counters,
// QueueSuite for core.Queue and PublisherSuite for core.Publisher.
// Adapters call them from their own tests:
//
//	func TestStore(t *testing.T) {
//		coretest.ExecutionStoreSuite(t, func(t *testing.T) core.ExecutionStore { return mem.New() })
//	}
//
// Latencies is the benchmarks' shared measure of latency percentiles.
//
// It is imported only from _test.go files.
package coretest
