package core

import (
	"reflect"
	"testing"
)

func TestOperators(t *testing.T) {
	tests := []struct {
		name, op, when, eval string
		want                 bool
	}{
		{"EqualsYes", OpEquals, "yes", "yes", true},
		{"EqualsIsCaseSensitive", OpEquals, "yes", "Yes", false},
		{"Contains", OpContains, "error", "an error occurred", true},
		{"ContainsNot", OpContains, "error", "all good", false},
		{"StartsWith", OpStartsWith, "/", "/help", true},
		{"StartsWithNot", OpStartsWith, "/", "help", false},
		{"EndsWith", OpEndsWith, "?", "why?", true},
		{"EndsWithNot", OpEndsWith, "?", "because.", false},
		{"Gt", OpGt, "5", "7", true},
		{"GtEqualIsFalse", OpGt, "5", "5", false},
		{"GtParsesText", OpGt, "5", "Score: 8/10", true},
		{"GtNonNumberIsFalse", OpGt, "5", "many", false},
		{"Lt", OpLt, "5", "-2", true},
		{"LtNot", OpLt, "5", "12.5", false},
		{"InRange", OpInRange, "1-5", "3", true},
		{"InRangeInclusive", OpInRange, "1-5", "5", true},
		{"InRangeOutside", OpInRange, "1-5", "6", false},
		{"InRangeNegative", OpInRange, "-10--2", "-3", true},
		{"Default", OpDefault, "", "anything", true},
		{"Unknown", "near", "x", "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := opMatches(tt.op, tt.when, tt.eval); got != tt.want {
				t.Errorf("opMatches(%q, %q, %q) = %v, want %v", tt.op, tt.when, tt.eval, got, tt.want)
			}
		})
	}
}

func TestChooseBranch(t *testing.T) {
	tr := &Transition{Branches: []*Branch{
		{Operator: OpDefault, Goto: "fallback"},
		{Operator: OpEquals, When: "yes", Goto: "accept"},
		{Operator: OpEquals, When: "false", Goto: "reject"},
	}}
	tests := []struct {
		name    string
		eval    string
		aliases []string
		want    string
	}{
		{"FirstMatchingNonDefault", "yes", nil, "accept"},
		{"AliasMatches", "no", []string{"false"}, "reject"},
		{"DefaultWhenNothingMatches", "maybe", nil, "fallback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := chooseBranch(tr, tt.eval, tt.aliases)
			if err != nil || b.Goto != tt.want {
				t.Errorf("chooseBranch(%q) = %+v, %v; want goto %q", tt.eval, b, err, tt.want)
			}
		})
	}
	t.Run("NoMatchNoDefault", func(t *testing.T) {
		_, err := chooseBranch(&Transition{Branches: []*Branch{{Operator: OpEquals, When: "a", Goto: "x"}}}, "b", nil)
		if ErrorCode(err) != EINVALID {
			t.Errorf("err = %v, want invalid", err)
		}
	})
	t.Run("NoBranchesEnds", func(t *testing.T) {
		b, err := chooseBranch(nil, "x", nil)
		if b != nil || err != nil {
			t.Errorf("= %v, %v; want nil, nil", b, err)
		}
	})
}

func TestCompose(t *testing.T) {
	h1 := ChatHistory{Messages: []Message{{Role: "user", Content: "one"}}, Model: "m", InputTokens: 1, OutputTokens: 2}
	h2 := ChatHistory{Messages: []Message{{Role: "assistant", Content: "two"}}, Model: "m", InputTokens: 10, OutputTokens: 20}
	h3 := ChatHistory{Messages: []Message{{Role: "assistant", Content: "three"}}, Model: "other"}
	hv := func(h ChatHistory) Value { return Value{Type: TypeChatHistory, Data: h} }
	jv := func(m map[string]any) Value { return Value{Type: TypeJSON, Data: m} }
	tests := []struct {
		name      string
		out, with Value
		strategy  string
		want      Value
		wantErr   bool
	}{
		{"OverrideMapsOutputWins", jv(map[string]any{"a": 1, "b": 2}), jv(map[string]any{"b": 9, "c": 3}), StrategyOverride, jv(map[string]any{"a": 1, "b": 2, "c": 3}), false},
		{"OverrideOnlyWithIsMap", String("x"), jv(map[string]any{"c": 3}), StrategyOverride, jv(map[string]any{"c": 3}), false},
		{"OverrideKeepsOutput", String("x"), String("y"), StrategyOverride, String("x"), false},
		{"AppendStringToHistory", String("added"), hv(h1), StrategyAppendString, hv(ChatHistory{Messages: []Message{{Role: "user", Content: "one"}, {Role: "assistant", Content: "added"}}, Model: "m", InputTokens: 1, OutputTokens: 2}), false},
		{"AppendHistoryWithString", hv(h1), String("added"), StrategyAppendString, hv(ChatHistory{Messages: []Message{{Role: "user", Content: "one"}, {Role: "assistant", Content: "added"}}, Model: "m", InputTokens: 1, OutputTokens: 2}), false},
		{"AppendWrongTypes", String("a"), String("b"), StrategyAppendString, Value{}, true},
		{"MergeWithVarFirst", hv(h2), hv(h1), StrategyMergeChatHistorys, hv(ChatHistory{Messages: []Message{{Role: "user", Content: "one"}, {Role: "assistant", Content: "two"}}, Model: "m", InputTokens: 11, OutputTokens: 22}), false},
		{"MergeDropsDisagreeingModel", hv(h3), hv(h1), StrategyMergeChatHistorys, hv(ChatHistory{Messages: []Message{{Role: "user", Content: "one"}, {Role: "assistant", Content: "three"}}, InputTokens: 1, OutputTokens: 2}), false},
		{"MergeWrongTypes", String("a"), hv(h1), StrategyMergeChatHistorys, Value{}, true},
		{"DefaultHistoriesMerge", hv(h2), hv(h1), "", hv(ChatHistory{Messages: []Message{{Role: "user", Content: "one"}, {Role: "assistant", Content: "two"}}, Model: "m", InputTokens: 11, OutputTokens: 22}), false},
		{"DefaultStringAndHistoryAppends", String("added"), hv(h1), "", hv(ChatHistory{Messages: []Message{{Role: "user", Content: "one"}, {Role: "assistant", Content: "added"}}, Model: "m", InputTokens: 1, OutputTokens: 2}), false},
		{"DefaultOtherwiseOverrides", jv(map[string]any{"a": 1}), jv(map[string]any{"b": 2}), "", jv(map[string]any{"a": 1, "b": 2}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := composeValues(tt.out, tt.with, tt.strategy)
			if tt.wantErr {
				if ErrorCode(err) != EINVALID {
					t.Fatalf("err = %v, want invalid", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("compose = %#v, %v\nwant %#v", got, err, tt.want)
			}
		})
	}
	t.Run("DoesNotMutateInputs", func(t *testing.T) {
		before := len(h1.Messages)
		if _, err := composeValues(String("x"), hv(h1), StrategyAppendString); err != nil {
			t.Fatal(err)
		}
		if len(h1.Messages) != before {
			t.Errorf("compose appended to the variable's own history")
		}
	})
}
