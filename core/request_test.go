package core_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
)

func TestDecodeRunRequest(t *testing.T) {
	const chain = `{"id":"c","tasks":[{"id":"a","handler":"noop"}]}`
	tests := []struct {
		name    string
		doc     string
		check   func(t *testing.T, r *core.RunRequest)
		wantErr string // the error message starts with it
	}{
		{"SeedShape", `{"input":"q","inputType":"string","templateVars":{"who":"ops","n":2,"b":true},"chain":` + chain + `}`,
			func(t *testing.T, r *core.RunRequest) {
				if r.Input != "q" || !r.HasInput || r.InputType != "string" || r.Chain.ID != "c" {
					t.Errorf("request = %+v", r)
				}
				if want := map[string]string{"who": "ops", "n": "2", "b": "true"}; !reflect.DeepEqual(r.TemplateVars, want) {
					t.Errorf("TemplateVars = %v, want %v", r.TemplateVars, want)
				}
			}, ""},
		{"SnakeCase", `{"input_type":"int","template_vars":{},"chain":` + chain + `}`,
			func(t *testing.T, r *core.RunRequest) {
				if r.InputType != "int" || r.HasInput {
					t.Errorf("request = %+v", r)
				}
			}, ""},
		{"NullInputIsGiven", `{"input":null,"chain":` + chain + `}`,
			func(t *testing.T, r *core.RunRequest) {
				if !r.HasInput || r.Input != nil {
					t.Errorf("request = %+v", r)
				}
			}, ""},
		{"PolicyOverridesChain", `{"routingPolicy":"least_busy","chain":{"id":"c","routing_policy":"ordered","tasks":[{"id":"a","handler":"noop"}]}}`,
			func(t *testing.T, r *core.RunRequest) {
				if r.Chain.RoutingPolicy != core.PolicyLeastBusy {
					t.Errorf("chain policy = %q", r.Chain.RoutingPolicy)
				}
			}, ""},
		{"NotAnObject", `["chain"]`, nil, "a run request is an object"},
		{"UnknownField", `{"inptu":"x","chain":` + chain + `}`, nil, `inptu: unknown field; did you mean "input"?`},
		{"BothSpellings", `{"inputType":"string","input_type":"string","chain":` + chain + `}`, nil, `input_type: "inputType" and "input_type" are the same field`},
		{"NoChain", `{"input":"x"}`, nil, "chain: required"},
		{"TypeNotString", `{"inputType":3,"chain":` + chain + `}`, nil, "inputType: want a string"},
		{"UnknownPolicy", `{"routing_policy":"fastest","chain":` + chain + `}`, nil, `routing_policy: unknown routing policy "fastest"`},
		{"VarNotScalar", `{"templateVars":{"x":[1]},"chain":` + chain + `}`, nil, "templateVars.x: want a string, got a list"},
		{"VarsNotObject", `{"templateVars":"x","chain":` + chain + `}`, nil, "templateVars: want an object of strings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tree any
			dec := json.NewDecoder(strings.NewReader(tt.doc))
			dec.UseNumber()
			if err := dec.Decode(&tree); err != nil {
				t.Fatal(err)
			}
			r, _, err := core.DecodeRunRequest(tree)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) || core.ErrorCode(err) != core.EINVALID {
					t.Fatalf("err = %v, want EINVALID starting %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)
		})
	}
}

func TestRunRequestChainProblemsNameTheRequestField(t *testing.T) {
	tree, err := core.ParseDocument([]byte(`{"chain":{"id":"c","tasks":[{"id":"a","handler":"noop","temperatur":1}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = core.DecodeRunRequest(tree)
	var ve *core.ValidationError
	if !errors.As(err, &ve) || ve.Problems[0].Path != "chain.tasks[0].temperatur" {
		t.Fatalf("err = %v, want a problem at chain.tasks[0].temperatur", err)
	}
	c, _, err := core.DecodeChain([]byte(`{"id":"c","tasks":[{"id":"a","handler":"noop","transition":{"branches":[{"operator":"default","goto":"nowhere"}]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !errors.As(core.InRunRequest(core.Validate(c)), &ve) || ve.Problems[0].Path != "chain.tasks[0].transition.branches[0].goto" {
		t.Errorf("InRunRequest(Validate) = %v", ve)
	}
	plain := core.Errorf(core.ENOTFOUND, "x")
	if core.InRunRequest(plain) != error(plain) {
		t.Error("InRunRequest changed an error without problems")
	}
}
