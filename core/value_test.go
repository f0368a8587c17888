package core_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/stepwise-run/stepwise/core"
)

func TestCoerce(t *testing.T) {
	tests := []struct {
		name    string
		typ     core.DataType
		raw     any
		want    core.Value
		wantErr bool
	}{
		{"StringText", core.TypeString, "hi", core.String("hi"), false},
		{"StringKeepsNumberText", core.TypeString, "42", core.String("42"), false},
		{"StringFromMapValue", core.TypeString, map[string]any{"value": "v"}, core.String("v"), false},
		{"StringFromMap", core.TypeString, map[string]any{"a": 1.0}, core.String(`{"a":1}`), false},
		{"IntText", core.TypeInt, " 7 ", core.Value{Type: core.TypeInt, Data: 7}, false},
		{"IntNumber", core.TypeInt, 7.0, core.Value{Type: core.TypeInt, Data: 7}, false},
		{"IntBad", core.TypeInt, "seven", core.Value{}, true},
		{"FloatText", core.TypeFloat, "0.5", core.Value{Type: core.TypeFloat, Data: 0.5}, false},
		{"BoolText", core.TypeBool, "true", core.Value{Type: core.TypeBool, Data: true}, false},
		{"BoolBad", core.TypeBool, "yes please", core.Value{}, true},
		{"JSONText", core.TypeJSON, `{"a":[1,"b"]}`, core.Value{Type: core.TypeJSON, Data: map[string]any{"a": []any{json.Number("1"), "b"}}}, false},
		{"JSONValueIsKept", core.TypeJSON, map[string]any{"k": "v"}, core.Value{Type: core.TypeJSON, Data: map[string]any{"k": "v"}}, false},
		{"JSONBadText", core.TypeJSON, `{broken`, core.Value{}, true},
		{"ChatHistoryPlainText", core.TypeChatHistory, "hello", core.Value{Type: core.TypeChatHistory, Data: core.ChatHistory{Messages: []core.Message{{Role: "user", Content: "hello"}}}}, false},
		{"ChatHistoryObject", core.TypeChatHistory, map[string]any{"messages": []any{map[string]any{"role": "User", "content": "x"}}}, core.Value{Type: core.TypeChatHistory, Data: core.ChatHistory{Messages: []core.Message{{Role: "user", Content: "x"}}}}, false},
		{"ChatHistoryArray", core.TypeChatHistory, `[{"role":"user","content":"x"}]`, core.Value{Type: core.TypeChatHistory, Data: core.ChatHistory{Messages: []core.Message{{Role: "user", Content: "x"}}}}, false},
		{"ChatHistoryCallToolsAlias", core.TypeChatHistory, `{"messages":[{"role":"assistant","callTools":[{"id":"1","type":"function","function":{"name":"echo","arguments":"{}"}}]}]}`,
			core.Value{Type: core.TypeChatHistory, Data: core.ChatHistory{Messages: []core.Message{{Role: "assistant", ToolCalls: []core.ToolCall{toolCall("1", "echo", "{}")}}}}}, false},
		{"OpenAIChatPartsContent", core.TypeOpenAIChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"stop":"END"}`,
			core.Value{Type: core.TypeOpenAIChat, Data: core.OpenAIChatRequest{Model: "m", Messages: []core.Message{{Role: "user", Content: "ab",
				Parts: []core.ContentPart{{Type: "text", Text: "a"}, {Type: "text", Text: "b"}}}}, Stop: core.StopList{"END"}}}, false},
		{"OpenAIChatImagePart", core.TypeOpenAIChat, `{"messages":[{"role":"user","content":[{"type":"text","text":"what is it?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}}]}]}`,
			core.Value{Type: core.TypeOpenAIChat, Data: core.OpenAIChatRequest{Messages: []core.Message{{Role: "user", Content: "what is it?",
				Parts: []core.ContentPart{{Type: "text", Text: "what is it?"}, {Type: "image_url", ImageURL: &core.ImageURL{URL: "data:image/png;base64,iVBO"}}}}}}}, false},
		{"OpenAIChatAudioPartRefused", core.TypeOpenAIChat, `{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}`, core.Value{}, true},
		{"Vector", core.TypeVector, "[1, 2.5]", core.Value{Type: core.TypeVector, Data: []float32{1, 2.5}}, false},
		{"Nil", core.TypeNil, "", core.Nil, false},
		{"NilRejectsData", core.TypeNil, "x", core.Value{}, true},
		{"UnknownType", core.DataType("text"), "x", core.Value{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := core.Coerce(tt.typ, tt.raw)
			if tt.wantErr {
				if core.ErrorCode(err) != core.EINVALID {
					t.Fatalf("Coerce = %v, %v; want an invalid error", got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Coerce(%s, %#v) = %#v, %v\nwant %#v", tt.typ, tt.raw, got, err, tt.want)
			}
		})
	}
}

func TestValueJSONRoundTrip(t *testing.T) {
	values := map[string]core.Value{
		"string": core.String("x\ny"),
		"int":    {Type: core.TypeInt, Data: -3},
		"float":  {Type: core.TypeFloat, Data: 1.5},
		"bool":   {Type: core.TypeBool, Data: false},
		"json":   {Type: core.TypeJSON, Data: map[string]any{"n": json.Number("12345678901234567890123")}},
		"any":    {Type: core.TypeAny, Data: []any{"a", json.Number("1")}},
		"nil":    core.Nil,
		"search": {Type: core.TypeSearchResults, Data: []core.SearchResult{{ID: "1", Type: "doc", Distance: 0.1}}},
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			var back core.Value
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, v) {
				t.Errorf("round trip of %s = %#v, want %#v", b, back, v)
			}
		})
	}
}
