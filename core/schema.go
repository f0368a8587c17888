package core

import (
	"sort"
	"strings"
	"unicode"
)

// fieldKind is the shape a field's value must have.
type fieldKind int

const (
	kString fieldKind = iota
	kText             // a string; a number or boolean is taken as its text
	kInt
	kBool
	kNumber
	kDuration
	kStringList
	kStringMap
	kBoolMap
	kObject
	kObjectList
)

// field describes one canonical field of an object in the chain language.
type field struct {
	kind   fieldKind
	schema *schema // for kObject and kObjectList
	// values maps accepted spellings of the value to the canonical one
	// (handler names, operators); nil accepts any string.
	values map[string]string
}

// schema describes an object of the chain language: its canonical fields,
// the aliases accepted for them (camelCase forms are derived), and fields
// of older generations that are accepted and ignored with a warning.
type schema struct {
	fields  map[string]field
	aliases map[string]string
	ignored map[string]string
}

var (
	composeSchema = &schema{
		fields: map[string]field{
			"with_var": {kind: kString},
			"strategy": {kind: kString},
		},
	}
	branchSchema = &schema{
		fields: map[string]field{
			"operator": {kind: kString, values: operatorAliases},
			"when":     {kind: kText},
			"goto":     {kind: kString},
			"compose":  {kind: kObject, schema: composeSchema},
		},
		ignored: map[string]string{"alert_on_match": "alerts were removed from the reference in 2025"},
	}
	transitionSchema = &schema{
		fields: map[string]field{
			"on_failure": {kind: kString},
			"branches":   {kind: kObjectList, schema: branchSchema},
		},
		ignored: map[string]string{"on_failure_alert": "alerts were removed from the reference in 2025"},
	}
	hookSchema = &schema{
		fields: map[string]field{
			"name":      {kind: kString},
			"tool_name": {kind: kString},
			"args":      {kind: kStringMap},
		},
		aliases: map[string]string{"type": "name"},
	}
	executeConfigSchema = &schema{
		fields: map[string]field{
			"model":              {kind: kString},
			"models":             {kind: kStringList},
			"provider":           {kind: kString},
			"providers":          {kind: kStringList},
			"temperature":        {kind: kNumber},
			"top_p":              {kind: kNumber},
			"max_tokens":         {kind: kInt},
			"stop":               {kind: kStringList},
			"hooks":              {kind: kStringList},
			"hide_tools":         {kind: kStringList},
			"pass_clients_tools": {kind: kBool},
		},
		aliases: map[string]string{"tools": "hooks"},
		ignored: map[string]string{
			"tools_policies": "tool policies are not supported; use hide_tools",
			"think":          "thinking control is not supported yet",
			"shift":          "context shifting is not supported",
			"retry_policy":   "use the task's retry_on_failure and retry_backoff",
		},
	}
	taskSchema = &schema{
		fields: map[string]field{
			"id":                 {kind: kString},
			"description":        {kind: kString},
			"handler":            {kind: kString, values: handlerAliases},
			"system_instruction": {kind: kString},
			"prompt_template":    {kind: kString},
			"input_var":          {kind: kString},
			"valid_conditions":   {kind: kBoolMap},
			"execute_config":     {kind: kObject, schema: executeConfigSchema},
			"hook":               {kind: kObject, schema: hookSchema},
			"output_template":    {kind: kString},
			"print":              {kind: kString},
			"timeout":            {kind: kDuration},
			"retry_on_failure":   {kind: kInt},
			"retry_backoff":      {kind: kDuration},
			"transition":         {kind: kObject, schema: transitionSchema},
			// compose at task level is the older generation's place for
			// it; it is moved onto every branch that has none.
			"compose": {kind: kObject, schema: composeSchema},
		},
		aliases: map[string]string{"type": "handler", "tools": "hook"},
		ignored: map[string]string{"triggers": "task triggers were removed from the reference in 2025"},
	}
	chainSchema = &schema{
		fields: map[string]field{
			"id":               {kind: kString},
			"description":      {kind: kString},
			"debug":            {kind: kBool},
			"token_limit":      {kind: kInt},
			"max_steps":        {kind: kInt},
			"max_tokens_total": {kind: kInt},
			"max_duration":     {kind: kDuration},
			// routing_strategy is the older reference's name; its value
			// names the same policies.
			"routing_policy": {kind: kString},
			"tasks":          {kind: kObjectList, schema: taskSchema},
		},
		aliases: map[string]string{"routing_strategy": "routing_policy"},
	}
)

// canonical returns the canonical name for key and whether it is known.
func (s *schema) canonical(key string) (string, bool) {
	if _, ok := s.fields[key]; ok {
		return key, true
	}
	if c, ok := s.aliases[key]; ok {
		return c, true
	}
	snake := toSnake(key)
	if _, ok := s.fields[snake]; ok {
		return snake, true
	}
	if c, ok := s.aliases[snake]; ok {
		return c, true
	}
	return "", false
}

// names returns every canonical field name, sorted.
func (s *schema) names() []string {
	out := make([]string, 0, len(s.fields))
	for k := range s.fields {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// toSnake converts camelCase to snake_case ("systemInstruction" ->
// "system_instruction").
func toSnake(s string) string {
	var sb strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				sb.WriteByte('_')
			}
			sb.WriteRune(unicode.ToLower(r))
			continue
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// Fields returns the canonical field names of each object of the chain
// language, by object: chain, task, execute_config, hook, transition,
// branch, compose. (Task-level compose, an older generation's place for
// it, is listed under compose's aliases in the documentation, not here.)
func Fields() map[string][]string {
	out := map[string][]string{}
	for name, s := range map[string]*schema{
		"chain": chainSchema, "task": taskSchema, "execute_config": executeConfigSchema,
		"hook": hookSchema, "transition": transitionSchema, "branch": branchSchema, "compose": composeSchema,
	} {
		for _, f := range s.names() {
			if name == "task" && f == "compose" {
				continue
			}
			out[name] = append(out[name], f)
		}
	}
	return out
}
