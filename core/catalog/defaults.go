package catalog

import (
	"slices"
	"strconv"
	"strings"

	"github.com/stepwise-run/stepwise/core"
)

// ParseDefaults reads the default models the way the seed configured them:
// EMBED_MODEL, TASK_MODEL and CHAT_MODEL, each with its _PROVIDER (a
// backend type, any case) and _MODEL_CONTEXT_LENGTH (default
// DefaultContextLength). get looks a variable up — the caller's
// environment: only entry points read it. A malformed value is EINVALID,
// the message starting with the variable's name.
func ParseDefaults(get func(string) string) (Defaults, error) {
	read := func(prefix string) (DefaultModel, error) {
		m := DefaultModel{
			Name:          strings.TrimSpace(get(prefix + "_MODEL")),
			Provider:      strings.ToLower(strings.TrimSpace(get(prefix + "_PROVIDER"))),
			ContextLength: DefaultContextLength,
		}
		if m.Provider != "" && !slices.Contains(BackendTypes(), m.Provider) {
			return m, core.Errorf(core.EINVALID, "%s_PROVIDER: %q: want one of %s", prefix, m.Provider, strings.Join(BackendTypes(), ", "))
		}
		if v := strings.TrimSpace(get(prefix + "_MODEL_CONTEXT_LENGTH")); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return m, core.Errorf(core.EINVALID, "%s_MODEL_CONTEXT_LENGTH: %q: want a positive number of tokens", prefix, v)
			}
			m.ContextLength = n
		}
		return m, nil
	}
	var d Defaults
	var err error
	if d.Embed, err = read("EMBED"); err != nil {
		return d, err
	}
	if d.Task, err = read("TASK"); err != nil {
		return d, err
	}
	d.Chat, err = read("CHAT")
	return d, err
}
