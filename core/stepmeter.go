package core

import "context"

// StepMeter is the port through which the engine holds executions to the
// budgets of their tenant and key and counts what their steps use (the
// usage ledger). The engine asks it before each model call of a step and
// tells it of each step that used a model before committing the step.
type StepMeter interface {
	// AdmitStep is asked before a step of ex calls a model. An error
	// (ELIMIT for a budget or rate limit already reached) fails the
	// attempt as the model's own failure would.
	AdmitStep(ctx context.Context, ex *Execution) error
	// MeterStep counts st, a step of ex that used a model. It is called
	// before st is committed, and again if the same step runs again (a
	// crash, a lost commit): it must count a step index once.
	MeterStep(ctx context.Context, ex *Execution, st *Step) error
}

// admitModel asks the engine's meter, if any, whether the step may call a
// model.
func (r *stepRun) admitModel(ctx context.Context) error {
	if r.e.meter == nil {
		return nil
	}
	return r.e.meter.AdmitStep(ctx, r.ex)
}
