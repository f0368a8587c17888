// Package mem is an in-memory implementation of core's storage ports, for
// tests and for `stepwise run`, and the in-process event bus (Bus). Executions and steps are kept as JSON, and
// catalog records as copies of their bytes, exactly as a durable store would
// keep them, so that nothing a caller holds aliases the stored state and
// every value round-trips as it would through a database.
package mem

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// Store keeps executions, steps and catalog records in memory. It is safe
// for concurrent use.
type Store struct {
	mu         sync.Mutex
	executions map[key]*record
	records    map[kindKey]*kindRecords
	counters   map[key]int64
}

type key struct{ tenant, id string }

type record struct {
	// execution is the JSON of the execution without its chain, which is
	// kept once in chain: commits never change the snapshot.
	execution []byte
	chain     []byte
	version   int64
	steps     map[int][]byte
	maxStep   int
	// The fields ListExecutions filters and sorts on, beside the JSON so
	// that a listing decodes only the page it returns.
	status    core.Status
	chainID   string
	createdAt time.Time
	updatedAt time.Time
}

var (
	_ core.ExecutionStore = (*Store)(nil)
	_ core.RecordStore    = (*Store)(nil)
	_ core.Counters       = (*Store)(nil)
)

// New returns an empty Store.
func New() *Store {
	return &Store{executions: map[key]*record{}, records: map[kindKey]*kindRecords{}, counters: map[key]int64{}}
}

// CreateExecution implements core.ExecutionStore.
func (s *Store) CreateExecution(_ context.Context, e *core.Execution) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{e.Tenant, e.ID}
	if _, ok := s.executions[k]; ok {
		return core.Errorf(core.ECONFLICT, "execution %q already exists", e.ID)
	}
	chain, err := json.Marshal(e.Chain)
	if err != nil {
		return core.WrapError(core.EINTERNAL, err, "encode the chain of execution %q", e.ID)
	}
	state := *e
	state.Chain, state.Version = nil, 1
	b, err := json.Marshal(&state)
	if err != nil {
		return core.WrapError(core.EINTERNAL, err, "encode execution %q", e.ID)
	}
	rec := &record{execution: b, chain: chain, version: 1, steps: map[int][]byte{},
		status: e.Status, createdAt: e.CreatedAt, updatedAt: e.UpdatedAt}
	if e.Chain != nil {
		rec.chainID = e.Chain.ID
	}
	s.executions[k] = rec
	e.Version = 1
	return nil
}

// GetExecution implements core.ExecutionStore.
func (s *Store) GetExecution(_ context.Context, tenant, id string) (*core.Execution, error) {
	s.mu.Lock()
	rec, ok := s.executions[key{tenant, id}]
	var b, chain []byte
	if ok {
		b, chain = rec.execution, rec.chain
	}
	s.mu.Unlock()
	if !ok {
		return nil, core.Errorf(core.ENOTFOUND, "execution %q not found", id)
	}
	var e core.Execution
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "decode execution %q", id)
	}
	if err := json.Unmarshal(chain, &e.Chain); err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "decode the chain of execution %q", id)
	}
	return &e, nil
}

// CommitExecution implements core.ExecutionStore.
func (s *Store) CommitExecution(_ context.Context, e *core.Execution, step *core.Step) error {
	next := *e
	next.Chain, next.Version = nil, e.Version+1
	eb, err := json.Marshal(&next)
	if err != nil {
		return core.WrapError(core.EINTERNAL, err, "encode execution %q", e.ID)
	}
	var sb []byte
	if step != nil {
		if sb, err = json.Marshal(step); err != nil {
			return core.WrapError(core.EINTERNAL, err, "encode step %d of %q", step.Index, e.ID)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.executions[key{e.Tenant, e.ID}]
	if !ok {
		return core.Errorf(core.ENOTFOUND, "execution %q not found", e.ID)
	}
	if rec.version != e.Version {
		return core.Errorf(core.ECONFLICT, "execution %q is at version %d, not %d", e.ID, rec.version, e.Version)
	}
	if step != nil {
		if _, dup := rec.steps[step.Index]; dup {
			return core.Errorf(core.ECONFLICT, "step %d of execution %q is already committed", step.Index, e.ID)
		}
		rec.steps[step.Index] = sb
		rec.maxStep = max(rec.maxStep, step.Index)
	}
	rec.execution = eb
	rec.version = next.Version
	rec.status, rec.updatedAt = e.Status, e.UpdatedAt
	e.Version = next.Version
	return nil
}

// ListSteps implements core.ExecutionStore.
func (s *Store) ListSteps(_ context.Context, tenant, executionID string, after, limit int) ([]*core.Step, error) {
	s.mu.Lock()
	rec, ok := s.executions[key{tenant, executionID}]
	var raw [][]byte
	if ok {
		for i := after + 1; i <= rec.maxStep && (limit <= 0 || len(raw) < limit); i++ {
			if b, ok := rec.steps[i]; ok {
				raw = append(raw, b)
			}
		}
	}
	s.mu.Unlock()
	if !ok {
		return nil, core.Errorf(core.ENOTFOUND, "execution %q not found", executionID)
	}
	out := make([]*core.Step, 0, len(raw))
	for _, b := range raw {
		var st core.Step
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, core.WrapError(core.EINTERNAL, err, "decode step of %q", executionID)
		}
		out = append(out, &st)
	}
	return out, nil
}
