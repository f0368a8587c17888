package mem

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/stepwise-run/stepwise/core"
)

// Live is an execution store that keeps executions as values rather than
// as JSON: for a process whose executions never leave it (`stepwise
// run`), where encoding every checkpoint would be most of a step's cost.
// Values are treated as immutable, as the engine treats them: a commit
// keeps a copy of the execution and its variables, not of the values.
// Store, which encodes, is the one tests use to catch values a durable
// store could not keep.
type Live struct {
	mu         sync.Mutex
	executions map[key]*liveRecord
}

type liveRecord struct {
	ex    *core.Execution
	steps []*core.Step
}

var _ core.ExecutionStore = (*Live)(nil)

// NewLive returns an empty Live store.
func NewLive() *Live { return &Live{executions: map[key]*liveRecord{}} }

// copyExecution is a copy the caller may change without touching the
// stored one.
func copyExecution(e *core.Execution) *core.Execution {
	c := *e
	if e.Vars != nil {
		c.Vars = make(map[string]core.Value, len(e.Vars))
		for k, v := range e.Vars {
			c.Vars[k] = v
		}
	}
	if e.Error != nil {
		xe := *e.Error
		c.Error = &xe
	}
	if e.TemplateVars != nil {
		c.TemplateVars = make(map[string]string, len(e.TemplateVars))
		for k, v := range e.TemplateVars {
			c.TemplateVars[k] = v
		}
	}
	return &c
}

// CreateExecution implements core.ExecutionStore.
func (s *Live) CreateExecution(_ context.Context, e *core.Execution) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{e.Tenant, e.ID}
	if _, ok := s.executions[k]; ok {
		return core.Errorf(core.ECONFLICT, "execution %q already exists", e.ID)
	}
	e.Version = 1
	s.executions[k] = &liveRecord{ex: copyExecution(e)}
	return nil
}

// GetExecution implements core.ExecutionStore.
func (s *Live) GetExecution(_ context.Context, tenant, id string) (*core.Execution, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.executions[key{tenant, id}]
	if !ok {
		return nil, core.Errorf(core.ENOTFOUND, "execution %q not found", id)
	}
	return copyExecution(rec.ex), nil
}

// CommitExecution implements core.ExecutionStore.
func (s *Live) CommitExecution(_ context.Context, e *core.Execution, step *core.Step) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.executions[key{e.Tenant, e.ID}]
	if !ok {
		return core.Errorf(core.ENOTFOUND, "execution %q not found", e.ID)
	}
	if rec.ex.Version != e.Version {
		return core.Errorf(core.ECONFLICT, "execution %q is at version %d, not %d", e.ID, rec.ex.Version, e.Version)
	}
	if step != nil {
		if i, found := slices.BinarySearchFunc(rec.steps, step.Index, func(s *core.Step, n int) int { return s.Index - n }); found {
			return core.Errorf(core.ECONFLICT, "step %d of execution %q is already committed", step.Index, e.ID)
		} else {
			st := *step
			rec.steps = slices.Insert(rec.steps, i, &st)
		}
	}
	next := copyExecution(e)
	next.Chain = rec.ex.Chain // the snapshot is written once
	next.Version = e.Version + 1
	rec.ex = next
	e.Version = next.Version
	return nil
}

// ListSteps implements core.ExecutionStore.
func (s *Live) ListSteps(_ context.Context, tenant, executionID string, after, limit int) ([]*core.Step, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.executions[key{tenant, executionID}]
	if !ok {
		return nil, core.Errorf(core.ENOTFOUND, "execution %q not found", executionID)
	}
	out := []*core.Step{}
	for _, st := range rec.steps {
		if st.Index > after && (limit <= 0 || len(out) < limit) {
			c := *st
			out = append(out, &c)
		}
	}
	return out, nil
}

// ListExecutions implements core.ExecutionStore.
func (s *Live) ListExecutions(_ context.Context, tenant string, q core.ExecutionQuery) (core.ExecutionPage, error) {
	limit, pos, hasPos, err := core.ListQuery{Cursor: q.Cursor, Limit: q.Limit}.Bounds()
	if err != nil {
		return core.ExecutionPage{}, err
	}
	s.mu.Lock()
	var matches []*core.Execution
	for k, rec := range s.executions {
		ex := rec.ex
		chainID := ""
		if ex.Chain != nil {
			chainID = ex.Chain.ID
		}
		r := record{status: ex.Status, chainID: chainID, updatedAt: ex.UpdatedAt}
		if k.tenant == tenant && r.matches(q) && (!hasPos || pos.After(ex.CreatedAt, k.id)) {
			c := copyExecution(ex)
			c.Chain = &core.Chain{ID: chainID}
			matches = append(matches, c)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(matches, func(a, b *core.Execution) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	var page core.ExecutionPage
	if len(matches) > limit {
		matches = matches[:limit]
		last := matches[limit-1]
		page.Next = core.EncodeCursor(last.CreatedAt, last.ID)
	}
	page.Executions = matches
	if page.Executions == nil {
		page.Executions = []*core.Execution{}
	}
	return page, nil
}
