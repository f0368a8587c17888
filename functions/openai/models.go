package openai

import (
	"cmp"
	"context"
	"net/http"
	"slices"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// model is one entry of a model list.
type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// modelList is the body of GET /v1/models.
type modelList struct {
	Object string  `json:"object"`
	Data   []model `json:"data"`
}

// routable lists the models a request can be routed to: those the
// reachable backends list and may serve (a backend in affinity groups
// serves its groups' models only), each once, by name, owned by the first
// backend that serves it.
func (h *Handler) routable(ctx context.Context) []model {
	seen := map[string]bool{}
	var out []model
	for _, st := range h.models(ctx).States(ctx) {
		if !st.Reachable {
			continue
		}
		var allowed map[string]bool
		if st.Models != nil {
			allowed = map[string]bool{}
			for _, m := range st.Models {
				allowed[llm.ModelKey(m)] = true
			}
		}
		for _, pm := range st.PulledModels {
			key := llm.ModelKey(pm.Name)
			if seen[key] || (allowed != nil && !allowed[key]) {
				continue
			}
			seen[key] = true
			created := int64(0)
			if !pm.ModifiedAt.IsZero() {
				created = pm.ModifiedAt.Unix()
			}
			out = append(out, model{ID: pm.Name, Object: "model", Created: created, OwnedBy: st.Name})
		}
	}
	slices.SortFunc(out, func(a, b model) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// listModels lists the routable models.
func (h *Handler) listModels(w http.ResponseWriter, r *http.Request) {
	webapi.WriteJSON(w, http.StatusOK, modelList{Object: "list", Data: nonNil(h.routable(r.Context()))})
}

// getModel describes one routable model; the id is its name with its tag,
// and may hold '/'.
func (h *Handler) getModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	for _, m := range h.routable(r.Context()) {
		if llm.ModelKey(m.ID) == llm.ModelKey(id) {
			webapi.WriteJSON(w, http.StatusOK, m)
			return
		}
	}
	writeError(w, r, modelError(core.Errorf(core.ENOTFOUND, "no backend lists it"), id))
}

// chainModels lists the models a chain's requests may name: the routable
// models when one of its chat tasks leaves the model open to the request,
// else the models its tasks name.
func (h *Handler) chainModels(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	chain, err := h.cfg.Catalog.GetChain(ctx, webapi.Tenant(ctx), r.PathValue("chain"))
	if err != nil {
		if core.ErrorCode(err) == core.ENOTFOUND {
			err = &apiError{status: http.StatusNotFound, code: "chain_not_found", param: "chain", msg: "no chain " + r.PathValue("chain")}
		}
		writeError(w, r, err)
		return
	}
	open := false
	var named []string
	for _, t := range chain.Tasks {
		ec := t.ExecuteConfig
		if t.Handler == core.HandlerChatCompletion && (ec == nil || (ec.Model == "" && len(ec.Models) == 0)) {
			open = true
		}
		if ec != nil {
			for _, m := range append([]string{ec.Model}, ec.Models...) {
				if m != "" && !slices.Contains(named, m) {
					named = append(named, m)
				}
			}
		}
	}
	if open {
		h.listModels(w, r)
		return
	}
	slices.Sort(named)
	out := make([]model, 0, len(named))
	for _, m := range named {
		out = append(out, model{ID: m, Object: "model", OwnedBy: chain.ID})
	}
	webapi.WriteJSON(w, http.StatusOK, modelList{Object: "list", Data: out})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
