package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// DataType names the type of a Value, as used by inputType/outputType.
type DataType string

// The data types of the chain language.
const (
	TypeAny                DataType = "any"
	TypeString             DataType = "string"
	TypeBool               DataType = "bool"
	TypeInt                DataType = "int"
	TypeFloat              DataType = "float"
	TypeVector             DataType = "vector"
	TypeSearchResults      DataType = "search_results"
	TypeJSON               DataType = "json"
	TypeChatHistory        DataType = "chat_history"
	TypeOpenAIChat         DataType = "openai_chat"
	TypeOpenAIChatResponse DataType = "openai_chat_response"
	TypeNil                DataType = "nil"
)

// DataTypes returns every data type, in documentation order.
func DataTypes() []DataType {
	return []DataType{
		TypeString, TypeBool, TypeInt, TypeFloat, TypeJSON, TypeChatHistory,
		TypeOpenAIChat, TypeOpenAIChatResponse, TypeVector, TypeSearchResults, TypeAny, TypeNil,
	}
}

// ParseDataType returns the DataType named s, or an EINVALID error naming
// the known types.
func ParseDataType(s string) (DataType, error) {
	types := DataTypes()
	for _, t := range types {
		if string(t) == s {
			return t, nil
		}
	}
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = string(t)
	}
	return "", Errorf(EINVALID, "unknown data type %q (known: %s)", s, strings.Join(names, ", "))
}

// Value is a typed value flowing between tasks. Data holds the Go form of
// the type: string, bool, int, float64, []float32, []SearchResult,
// ChatHistory, OpenAIChatRequest, OpenAIChatResponse, nil, or for json and
// any the result of decoding JSON (maps, slices, json.Number, ...).
type Value struct {
	Type DataType
	Data any
}

// Nil is the value of type nil.
var Nil = Value{Type: TypeNil}

// String returns the string value of type string.
func String(s string) Value { return Value{Type: TypeString, Data: s} }

type wireValue struct {
	Type  DataType        `json:"type"`
	Value json.RawMessage `json:"value,omitempty"`
}

// MarshalJSON encodes the value as {"type": ..., "value": ...}.
func (v Value) MarshalJSON() ([]byte, error) {
	t := v.Type
	if t == "" {
		t = TypeNil
	}
	buf := make([]byte, 0, 32)
	buf = append(buf, `{"type":"`...)
	buf = append(buf, t...) // type names are plain ASCII words
	buf = append(buf, '"')
	if v.Data != nil {
		data, err := json.Marshal(v.Data)
		if err != nil {
			return nil, err
		}
		buf = append(buf, `,"value":`...)
		buf = append(buf, data...)
	}
	return append(buf, '}'), nil
}

// UnmarshalJSON decodes what MarshalJSON produced, restoring the Go form of
// the type so that a value survives a checkpoint unchanged.
func (v *Value) UnmarshalJSON(b []byte) error {
	var w wireValue
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if w.Type == "" {
		w.Type = TypeNil
	}
	if len(w.Value) == 0 || string(w.Value) == "null" {
		*v = Value{Type: w.Type}
		return nil
	}
	decoded, err := decodeTyped(w.Type, w.Value)
	if err != nil {
		return fmt.Errorf("decode %s value: %w", w.Type, err)
	}
	*v = decoded
	return nil
}

// decodeTyped decodes JSON text into the Go form of typ.
func decodeTyped(typ DataType, raw []byte) (Value, error) {
	var data any
	var err error
	switch typ {
	case TypeString:
		data, err = decodeAs[string](raw)
	case TypeBool:
		data, err = decodeAs[bool](raw)
	case TypeInt:
		data, err = decodeAs[int](raw)
	case TypeFloat:
		data, err = decodeAs[float64](raw)
	case TypeVector:
		data, err = decodeAs[[]float32](raw)
	case TypeSearchResults:
		data, err = decodeAs[[]SearchResult](raw)
	case TypeChatHistory:
		data, err = decodeAs[ChatHistory](raw)
	case TypeOpenAIChat:
		data, err = decodeAs[OpenAIChatRequest](raw)
	case TypeOpenAIChatResponse:
		data, err = decodeAs[OpenAIChatResponse](raw)
	case TypeJSON, TypeAny:
		data, err = decodeJSON(raw)
	case TypeNil:
	default:
		_, err = ParseDataType(string(typ))
	}
	if err != nil {
		return Value{}, err
	}
	return Value{Type: typ, Data: data}, nil
}

// decodeAs decodes JSON text into a T.
func decodeAs[T any](raw []byte) (T, error) {
	var x T
	err := json.Unmarshal(raw, &x)
	return x, err
}

// decodeJSON decodes arbitrary JSON keeping numbers as json.Number, so
// large integers keep every digit.
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("unexpected data after the JSON value")
	}
	return x, nil
}

// Text renders a value as the text a prompt handler sends to a model: a
// string as is, numbers and booleans formatted, a chat history or an
// OpenAI request as the content of its last message. Other types are an
// EINVALID error.
func (v Value) Text() (string, error) {
	switch d := v.Data.(type) {
	case string:
		return d, nil
	case int:
		return strconv.Itoa(d), nil
	case float64:
		return formatFloat(d), nil
	case bool:
		return strconv.FormatBool(d), nil
	case json.Number:
		return d.String(), nil
	case ChatHistory:
		return d.Last().Content, nil
	case OpenAIChatRequest:
		if len(d.Messages) == 0 {
			return "", nil
		}
		return d.Messages[len(d.Messages)-1].Content, nil
	}
	return "", Errorf(EINVALID, "a value of type %s cannot be used as a prompt (want string, int, float, bool, chat_history or openai_chat)", v.Type)
}

// Display renders any value as text for people and for tool results: Text
// where it applies, JSON otherwise, "null" for nil.
func (v Value) Display() string {
	if s, err := v.Text(); err == nil {
		return s
	}
	if v.Data == nil {
		return "null"
	}
	b, err := json.Marshal(v.Data)
	if err != nil {
		return fmt.Sprint(v.Data)
	}
	return string(b)
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// Coerce converts raw input (decoded JSON, or text) into a Value of type
// typ. Text given for a structured type is parsed as JSON; text given for
// chat_history that is not JSON becomes a history with one user message.
// Unlike the reference, a value that does not fit is an EINVALID error, not
// a silent zero, and json input is kept.
func Coerce(typ DataType, raw any) (Value, error) {
	if _, err := ParseDataType(string(typ)); err != nil {
		return Value{}, err
	}
	text, isText := raw.(string)
	switch typ {
	case TypeString:
		switch r := raw.(type) {
		case string:
			return String(r), nil
		case nil:
			return String(""), nil
		case map[string]any:
			if s, ok := r["value"].(string); ok {
				return String(s), nil
			}
		}
		b, err := json.Marshal(raw)
		if err != nil {
			return Value{}, WrapError(EINVALID, err, "input cannot be rendered as a string")
		}
		return String(string(b)), nil
	case TypeInt, TypeFloat, TypeBool:
		if !isText {
			b, err := json.Marshal(raw)
			if err != nil {
				return Value{}, WrapError(EINVALID, err, "input is not a %s", typ)
			}
			text = string(b)
		}
		return parseScalar(typ, strings.TrimSpace(text))
	case TypeNil:
		if raw != nil && !(isText && text == "") {
			return Value{}, Errorf(EINVALID, "input of type nil must be empty")
		}
		return Nil, nil
	case TypeAny:
		if isText {
			return Value{Type: TypeAny, Data: text}, nil
		}
		return Value{Type: TypeAny, Data: normalizeJSON(raw)}, nil
	}
	// Structured types: get JSON text, then decode it into the Go form.
	var rawJSON []byte
	if isText {
		trimmed := strings.TrimSpace(text)
		if typ == TypeChatHistory && !json.Valid([]byte(trimmed)) {
			return Value{Type: TypeChatHistory, Data: ChatHistory{Messages: []Message{{Role: RoleUser, Content: text}}}}, nil
		}
		rawJSON = []byte(trimmed)
	} else {
		b, err := json.Marshal(raw)
		if err != nil {
			return Value{}, WrapError(EINVALID, err, "input is not valid %s", typ)
		}
		rawJSON = b
	}
	if typ == TypeChatHistory && len(rawJSON) > 0 && rawJSON[0] == '[' {
		// A bare array of messages.
		rawJSON = append(append([]byte(`{"messages":`), rawJSON...), '}')
	}
	v, err := decodeTyped(typ, rawJSON)
	if err != nil {
		return Value{}, WrapError(EINVALID, err, "input is not valid %s", typ)
	}
	return v, nil
}

func parseScalar(typ DataType, s string) (Value, error) {
	s = strings.Trim(s, `"`)
	switch typ {
	case TypeInt:
		if n, err := strconv.Atoi(s); err == nil {
			return Value{Type: TypeInt, Data: n}, nil
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return Value{Type: TypeInt, Data: int(f)}, nil
		}
	case TypeFloat:
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return Value{Type: TypeFloat, Data: f}, nil
		}
	case TypeBool:
		if b, err := strconv.ParseBool(s); err == nil {
			return Value{Type: TypeBool, Data: b}, nil
		}
	}
	return Value{}, Errorf(EINVALID, "input %q is not a valid %s", s, typ)
}

// normalizeJSON re-decodes a Go value through JSON so that maps, slices and
// numbers take the forms decodeJSON produces.
func normalizeJSON(x any) any {
	b, err := json.Marshal(x)
	if err != nil {
		return x
	}
	y, err := decodeJSON(b)
	if err != nil {
		return x
	}
	return y
}
