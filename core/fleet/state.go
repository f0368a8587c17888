package fleet

import (
	"context"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/llm"
)

// BackendState is a backend as it is now: what it is declared to serve,
// what it has, and what is wrong with it.
type BackendState struct {
	// Backend is the backend as the catalog has it.
	catalog.Backend
	// Reachable tells whether the backend answered its last listing.
	Reachable bool `json:"reachable"`
	// Models are the models its groups assign it; nil when it is in no
	// group (it serves whatever it lists).
	Models []string `json:"models"`
	// PulledModels are the models it lists now.
	PulledModels []ModelStatus `json:"pulledModels"`
	// Error says what is wrong: the client could not be built, the
	// listing failed, its last call failed, a download failed; "" when
	// nothing is.
	Error string `json:"error,omitempty"`
	// Pull is the last progress step of the download running onto the
	// backend, nil when none is.
	Pull *Progress `json:"pull,omitempty"`
}

// ModelStatus is a model a backend lists, with the capabilities and
// context length of the declared model of the same name (no capability
// when undeclared).
type ModelStatus struct {
	Name       string    `json:"name"`
	Model      string    `json:"model"`
	ModifiedAt time.Time `json:"modifiedAt"`
	Size       int64     `json:"size"`
	Digest     string    `json:"digest"`
	// Details describe the model's format and family, as Ollama reports
	// them (empty for other backends).
	Details       llm.ModelDetails `json:"details"`
	ContextLength int              `json:"contextLength"`
	CanChat       bool             `json:"canChat"`
	CanEmbed      bool             `json:"canEmbed"`
	CanPrompt     bool             `json:"canPrompt"`
	CanStream     bool             `json:"canStream"`
}

// States returns every backend, oldest first, with its current listing:
// the cached one, or a fresh one for a backend not listed yet or whose
// last listing failed (so a backend that came back shows as reachable).
// The caller's ctx bounds those fetches. Before the first Reload it loads
// the catalog; if that fails it returns nil.
func (f *Fleet) States(ctx context.Context) []BackendState {
	b, err := f.current(ctx)
	if err != nil {
		f.cfg.Logger.Warn("fleet: states", "err", err)
		return nil
	}
	listings := make(map[string]llm.Listing)
	for _, l := range b.router.Listings(ctx) {
		listings[l.ID] = l
	}
	out := make([]BackendState, 0, len(b.members))
	for _, m := range b.members {
		st := BackendState{Backend: m.backend, Models: m.models, PulledModels: []ModelStatus{}}
		var errs []string
		if m.keyErr != "" {
			errs = append(errs, "api key: "+m.keyErr)
		}
		if m.err != nil {
			errs = append(errs, "client: "+m.err.Error())
		} else if l := listings[m.backend.ID]; l.Err != nil {
			errs = append(errs, "listing models: "+l.Err.Error())
		} else {
			st.Reachable = true
			for _, info := range l.Models {
				st.PulledModels = append(st.PulledModels, b.status(info))
			}
		}
		if h := f.health.Of(m.backend.ID); h.Failing() && st.Reachable {
			errs = append(errs, "last call failed: "+h.LastError)
		}
		var pullErrs []string
		st.Pull, pullErrs = f.dl.status(m.backend.BaseURL)
		errs = append(errs, pullErrs...)
		st.Error = strings.Join(errs, "; ")
		out = append(out, st)
	}
	return out
}

// status describes a listed model, with what its declaration says.
func (b *build) status(info llm.ModelInfo) ModelStatus {
	s := ModelStatus{
		Name: info.Name, Model: info.Name,
		ModifiedAt: info.ModifiedAt, Size: info.Size, Digest: info.Digest,
		Details:       info.Details,
		ContextLength: info.ContextLength,
	}
	if d, ok := b.declared[llm.ModelKey(info.Name)]; ok {
		if d.ContextLength > 0 {
			s.ContextLength = d.ContextLength
		}
		s.CanChat, s.CanEmbed, s.CanPrompt, s.CanStream = d.CanChat, d.CanEmbed, d.CanPrompt, d.CanStream
	}
	return s
}
