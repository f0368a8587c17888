package hooks_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks"
)

func TestRegistry(t *testing.T) {
	ctx := context.Background()
	r := hooks.NewRegistry(nil, hooks.Print(), hooks.Echo())
	names, err := r.Hooks(ctx, core.DefaultTenant)
	if err != nil || !reflect.DeepEqual(names, []string{"echo", "print"}) {
		t.Errorf("Hooks = %v, %v; want [echo print]", names, err)
	}
	tools, err := r.ToolsOf(ctx, core.DefaultTenant, "echo")
	if err != nil || len(tools) != 1 || tools[0].Function.Name != "echo" || tools[0].Function.Parameters["type"] != "object" {
		t.Errorf("ToolsOf(echo) = %+v, %v", tools, err)
	}
	errCases := []struct {
		name string
		call func() error
	}{
		{"ToolsOfUnknownHook", func() error { _, err := r.ToolsOf(ctx, core.DefaultTenant, "nope"); return err }},
		{"CallUnknownHook", func() error { _, err := r.Call(ctx, core.HookCall{Hook: "nope"}); return err }},
		{"CallUnknownTool", func() error { _, err := r.Call(ctx, core.HookCall{Hook: "echo", Tool: "shout"}); return err }},
	}
	for _, tt := range errCases {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); core.ErrorCode(err) != core.ENOTFOUND {
				t.Errorf("err = %v, want not_found", err)
			}
		})
	}
}

func TestBuiltinHooks(t *testing.T) {
	hist := core.Value{Type: core.TypeChatHistory, Data: core.ChatHistory{Messages: []core.Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "yo"}}}}
	tests := []struct {
		name    string
		call    core.HookCall
		want    core.Value
		wantErr string
	}{
		{"EchoString", core.HookCall{Hook: "echo", Input: core.String("ping")}, core.String("ping"), ""},
		{"EchoToolArguments", core.HookCall{Hook: "echo", Tool: "echo", Input: core.Value{Type: core.TypeJSON, Data: map[string]any{"text": "from model"}}}, core.String("from model"), ""},
		{"EchoOtherJSON", core.HookCall{Hook: "echo", Input: core.Value{Type: core.TypeJSON, Data: map[string]any{"n": 1}}}, core.String(`{"n":1}`), ""},
		{"EchoHistory", core.HookCall{Hook: "echo", Input: hist}, core.Value{Type: core.TypeChatHistory, Data: core.ChatHistory{Messages: []core.Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "yo"}, {Role: "assistant", Content: "Echo: hi"}}}}, ""},
		{"PrintArgs", core.HookCall{Hook: "print", Args: map[string]string{"message": "done"}}, core.String("done"), ""},
		{"PrintToolArguments", core.HookCall{Hook: "print", Input: core.Value{Type: core.TypeJSON, Data: map[string]any{"message": "m"}}}, core.String("m"), ""},
		{"PrintHistory", core.HookCall{Hook: "print", Args: map[string]string{"message": "note"}, Input: hist}, core.Value{Type: core.TypeChatHistory, Data: core.ChatHistory{Messages: []core.Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "yo"}, {Role: "system", Content: "note"}}}}, ""},
		{"PrintNeedsMessage", core.HookCall{Hook: "print", Input: core.String("x")}, core.Value{}, "print needs a message"},
	}
	r := hooks.NewRegistry(nil, hooks.Echo(), hooks.Print())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Call(context.Background(), tt.call)
			if tt.wantErr != "" {
				if core.ErrorCode(err) != core.EINVALID {
					t.Fatalf("err = %v, want invalid %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Call = %#v, %v; want %#v", got, err, tt.want)
			}
		})
	}
	t.Run("EchoDoesNotMutateItsInput", func(t *testing.T) {
		before := len(hist.Data.(core.ChatHistory).Messages)
		if _, err := r.Call(context.Background(), core.HookCall{Hook: "echo", Input: hist}); err != nil {
			t.Fatal(err)
		}
		if after := len(hist.Data.(core.ChatHistory).Messages); after != before {
			t.Errorf("input history grew from %d to %d messages", before, after)
		}
	})
}
