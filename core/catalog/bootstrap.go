package catalog

import (
	"context"
	"slices"

	"github.com/stepwise-run/stepwise/core"
)

// DefaultOllamaName is the name of the backend Bootstrap registers for the
// configured Ollama server.
const DefaultOllamaName = "local-ollama"

// DefaultContextLength is the context length a default model is declared
// with when its configuration gives none.
const DefaultContextLength = 2048

// BootstrapConfig is what Bootstrap registers besides the built-in groups
// and the default models.
type BootstrapConfig struct {
	// OllamaURL is the local Ollama server's URL; "" registers none.
	OllamaURL string
	// OllamaName names its backend (default DefaultOllamaName).
	OllamaName string
}

// Bootstrap prepares a tenant's catalog at start: the built-in groups, a
// declaration of each configured default model in its built-in group
// (whatever its provider), and a backend for the configured Ollama server
// in the three built-in groups. Whatever exists already is left as it is,
// so running it again changes nothing.
func (c *Catalog) Bootstrap(ctx context.Context, tenant string, b BootstrapConfig) error {
	if err := c.EnsureBuiltinGroups(ctx, tenant); err != nil {
		return err
	}
	if err := c.declareDefaults(ctx, tenant); err != nil {
		return err
	}
	if b.OllamaURL == "" {
		return nil
	}
	name := b.OllamaName
	if name == "" {
		name = DefaultOllamaName
	}
	id, err := c.ensureOllama(ctx, tenant, name, b.OllamaURL)
	if err != nil {
		return err
	}
	for _, bg := range c.builtins() {
		if err := c.AssignBackend(ctx, tenant, bg.group.ID, id); err != nil {
			return err
		}
	}
	return nil
}

// declareDefaults declares the default models that are not declared and
// assigns each to its built-in group. A model that is the default of
// several groups is declared once with the capabilities of all of them.
func (c *Catalog) declareDefaults(ctx context.Context, tenant string) error {
	var decls []Model
	for _, bg := range c.builtins() {
		if bg.model.Name == "" {
			continue
		}
		i := slices.IndexFunc(decls, func(m Model) bool { return m.Model == bg.model.Name })
		if i < 0 {
			n := bg.model.ContextLength
			if n <= 0 {
				n = DefaultContextLength
			}
			decls = append(decls, Model{Model: bg.model.Name, ContextLength: n})
			i = len(decls) - 1
		}
		m := &decls[i]
		m.CanChat = m.CanChat || bg.caps.CanChat
		m.CanEmbed = m.CanEmbed || bg.caps.CanEmbed
		m.CanPrompt = m.CanPrompt || bg.caps.CanPrompt
		m.CanStream = m.CanStream || bg.caps.CanStream
	}
	for _, m := range decls {
		if c.exists(ctx, tenant, KindModel, m.Model) {
			continue
		}
		if _, err := c.CreateModel(ctx, tenant, m); err != nil && !c.exists(ctx, tenant, KindModel, m.Model) {
			return err
		}
	}
	for _, bg := range c.builtins() {
		if bg.model.Name == "" {
			continue
		}
		if err := c.AssignModel(ctx, tenant, bg.group.ID, bg.model.Name); err != nil {
			return err
		}
	}
	return nil
}

// ensureOllama returns the id of the backend named name, registering it
// at rawURL when there is none. A backend already registered at that URL
// under another name is used as it is, rather than failing the start.
func (c *Catalog) ensureOllama(ctx context.Context, tenant, name, rawURL string) (string, error) {
	r, err := c.store.FindRecord(ctx, tenant, KindBackend, "name="+name)
	if err == nil {
		return r.ID, nil
	}
	if core.ErrorCode(err) != core.ENOTFOUND {
		return "", err
	}
	b := Backend{Name: name, BaseURL: rawURL, Type: TypeOllama}
	if err := checkBackend(&b); err != nil {
		return "", err
	}
	r, err = c.store.FindRecord(ctx, tenant, KindBackend, "url="+b.BaseURL)
	if err == nil {
		return r.ID, nil
	}
	if core.ErrorCode(err) != core.ENOTFOUND {
		return "", err
	}
	created, err := c.CreateBackend(ctx, tenant, b)
	if err != nil {
		return "", err
	}
	return created.ID, nil
}

// Snapshot reads everything routing needs: every backend (oldest first,
// the order the "ordered" policy tries them in), model and group, the
// assignments between them, and the provider keys in clear. Assignments
// whose group or member is gone are left out.
func (c *Catalog) Snapshot(ctx context.Context, tenant string) (*Snapshot, error) {
	s := &Snapshot{BackendGroups: map[string][]string{}, GroupModels: map[string][]string{}}
	var err error
	if s.Backends, err = listDecoded[Backend](ctx, c, tenant, KindBackend); err != nil {
		return nil, err
	}
	sortOldestFirst(s.Backends)
	if s.Models, err = listDecoded[Model](ctx, c, tenant, KindModel); err != nil {
		return nil, err
	}
	if s.Groups, err = listDecoded[Group](ctx, c, tenant, KindGroup); err != nil {
		return nil, err
	}
	backends := idSet(s.Backends, func(b Backend) string { return b.ID })
	models := idSet(s.Models, func(m Model) string { return m.ID })
	groups := idSet(s.Groups, func(g Group) string { return g.ID })

	bgs, err := c.assignments(ctx, tenant, KindBackendInGroup, "")
	if err != nil {
		return nil, err
	}
	for _, a := range bgs {
		if groups[a.Group] && backends[a.Member] {
			s.BackendGroups[a.Member] = append(s.BackendGroups[a.Member], a.Group)
		}
	}
	gms, err := c.assignments(ctx, tenant, KindModelInGroup, "")
	if err != nil {
		return nil, err
	}
	for _, a := range gms {
		if groups[a.Group] && models[a.Member] {
			s.GroupModels[a.Group] = append(s.GroupModels[a.Group], a.Member)
		}
	}
	for _, ids := range s.BackendGroups {
		slices.Sort(ids)
	}
	for _, ids := range s.GroupModels {
		slices.Sort(ids)
	}
	if s.Keys, s.KeyErrors, err = c.openKeys(ctx, tenant, s.Backends); err != nil {
		return nil, err
	}
	s.Defaults = c.effective(s.GroupModels)
	return s, nil
}

// effective returns the default models in use: each configured one
// (Config.Defaults), else the first by name of the models assigned to its
// built-in group — so that a server started without EMBED_MODEL,
// TASK_MODEL and CHAT_MODEL gets its defaults from `stepwise bootstrap` or
// the equivalent API calls. groupModels holds sorted names by group id.
func (c *Catalog) effective(groupModels map[string][]string) Defaults {
	d := c.defaults
	fill := func(m *DefaultModel, group string) {
		if m.Name == "" && len(groupModels[group]) > 0 {
			m.Name = groupModels[group][0]
		}
	}
	fill(&d.Embed, GroupEmbed)
	fill(&d.Task, GroupTasks)
	fill(&d.Chat, GroupChat)
	return d
}

// listDecoded reads every record of kind, newest first.
func listDecoded[T any](ctx context.Context, c *Catalog, tenant, kind string) ([]T, error) {
	rs, err := c.listAll(ctx, tenant, kind, "")
	if err != nil {
		return nil, err
	}
	return decodeAll[T](rs)
}

// idSet returns the set of the items' ids.
func idSet[T any](items []T, id func(T) string) map[string]bool {
	out := make(map[string]bool, len(items))
	for _, v := range items {
		out[id(v)] = true
	}
	return out
}
