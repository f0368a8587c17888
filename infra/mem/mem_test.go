package mem_test

import (
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/coretest"
	"github.com/stepwise-run/stepwise/infra/mem"
)

func TestExecutionStore(t *testing.T) {
	coretest.ExecutionStoreSuite(t, func(*testing.T) core.ExecutionStore { return mem.New() })
}

func TestDurability(t *testing.T) {
	coretest.DurabilitySuite(t, func(*testing.T) core.ExecutionStore { return mem.New() })
}

func TestRecordStore(t *testing.T) {
	coretest.RecordStoreSuite(t, func(*testing.T) core.RecordStore { return mem.New() })
}

func TestCounters(t *testing.T) {
	coretest.CounterSuite(t, func(*testing.T) core.Counters { return mem.New() })
}

func TestBudgets(t *testing.T) {
	coretest.BudgetSuite(t, func(*testing.T) coretest.Store { return mem.New() })
}

func TestLiveExecutionStore(t *testing.T) {
	coretest.ExecutionStoreSuite(t, func(*testing.T) core.ExecutionStore { return mem.NewLive() })
}

func TestLiveDurability(t *testing.T) {
	coretest.DurabilitySuite(t, func(*testing.T) core.ExecutionStore { return mem.NewLive() })
}
