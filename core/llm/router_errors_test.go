package llm_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// refused is an error a backend answered about the call itself, as wire
// makes it for a 401.
func refused(msg string) error { return core.Upstream(core.Errorf(core.EINVALID, "%s", msg)) }

// failed is an error a backend answered about itself, as wire makes it for
// a 500.
func failed(msg string) error { return core.Upstream(core.Errorf(core.EUNAVAILABLE, "%s", msg)) }

func timedOut(msg string) error { return core.Errorf(core.ETIMEOUT, "%s", msg) }

// TestRouterAggregateError checks the code and the upstream mark of the
// error of a request that no candidate served, and of a single failure
// that ends the request at once.
func TestRouterAggregateError(t *testing.T) {
	tests := []struct {
		name         string
		backends     []*fakeProvider
		wantCode     string
		wantUpstream bool
		wantMsg      []string
		wantCalls    map[string][]string
	}{
		{
			name: "every backend timing out is a timeout",
			backends: []*fakeProvider{
				{name: "a", models: []string{"m:1b"}, fail: map[string]error{"m:1b": timedOut("read timeout")}},
				{name: "b", listErr: timedOut("dial timeout")},
			},
			wantCode: core.ETIMEOUT,
			wantMsg:  []string{"a: read timeout", "b: listing models failed: dial timeout"},
		},
		{
			name: "timeouts beside a backend without the model are a timeout",
			backends: []*fakeProvider{
				{name: "a", models: []string{"m:1b"}, fail: map[string]error{"m:1b": core.Errorf(core.ENOTFOUND, "model not found")}},
				{name: "b", models: []string{"m:1b"}, fail: map[string]error{"m:1b": timedOut("read timeout")}},
				backend("c", "other:1b"),
			},
			wantCode: core.ETIMEOUT,
			wantMsg:  []string{"a: model not found", "b: read timeout", "c does not list m:1b"},
		},
		{
			name: "every backend failing on its own is marked upstream",
			backends: []*fakeProvider{
				{name: "a", models: []string{"m:1b"}, fail: map[string]error{"m:1b": failed("HTTP 500")}},
				{name: "b", models: []string{"m:1b"}, fail: map[string]error{"m:1b": failed("HTTP 502")}},
			},
			wantCode: core.EUNAVAILABLE, wantUpstream: true,
			wantMsg: []string{"a: HTTP 500", "b: HTTP 502"},
		},
		{
			name: "a listing refused and a call failed are marked upstream",
			backends: []*fakeProvider{
				{name: "a", listErr: refused("HTTP 401")},
				{name: "b", models: []string{"m:1b"}, fail: map[string]error{"m:1b": failed("HTTP 500")}},
			},
			wantCode: core.EUNAVAILABLE, wantUpstream: true,
			wantMsg: []string{"a: listing models failed: HTTP 401", "b: HTTP 500"},
		},
		{
			name: "a timeout beside an upstream failure is unavailable",
			backends: []*fakeProvider{
				{name: "a", models: []string{"m:1b"}, fail: map[string]error{"m:1b": failed("HTTP 500")}},
				{name: "b", models: []string{"m:1b"}, fail: map[string]error{"m:1b": timedOut("read timeout")}},
			},
			wantCode: core.EUNAVAILABLE,
			wantMsg:  []string{"a: HTTP 500", "b: read timeout"},
		},
		{
			name: "a backend down beside an upstream failure is unavailable",
			backends: []*fakeProvider{
				{name: "a", models: []string{"m:1b"}, fail: map[string]error{"m:1b": failed("HTTP 500")}},
				{name: "b", listErr: unavailable("connection refused")},
			},
			wantCode: core.EUNAVAILABLE,
			wantMsg:  []string{"a: HTTP 500", "b: listing models failed: connection refused"},
		},
		{
			name: "busy backends are unavailable",
			backends: []*fakeProvider{
				{name: "a", models: []string{"m:1b"}, fail: map[string]error{"m:1b": unavailable("HTTP 503")}},
				{name: "b", models: []string{"m:1b"}, fail: map[string]error{"m:1b": unavailable("HTTP 429")}},
			},
			wantCode: core.EUNAVAILABLE,
			wantMsg:  []string{"a: HTTP 503", "b: HTTP 429"},
		},
		{
			name: "no backend having the model is not found",
			backends: []*fakeProvider{
				{name: "a", models: []string{"m:1b"}, fail: map[string]error{"m:1b": core.Errorf(core.ENOTFOUND, "model not found")}},
				backend("b", "other:1b"),
			},
			wantCode: core.ENOTFOUND,
			wantMsg:  []string{"a: model not found", "b does not list m:1b"},
		},
		{
			name: "a refusal passes through at once with its mark",
			backends: []*fakeProvider{
				{name: "a", models: []string{"m:1b"}, fail: map[string]error{"m:1b": refused("openai http://a/v1: chat with m:1b: HTTP 401")}},
				backend("b", "m:1b"),
			},
			wantCode: core.EINVALID, wantUpstream: true,
			wantMsg:   []string{"http://a/v1", "m:1b", "401"},
			wantCalls: map[string][]string{"a": {"chat:m:1b"}, "b": nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var backends []llm.Backend
			for _, p := range tt.backends {
				backends = append(backends, llm.Backend{Name: p.name, Type: "ollama", Provider: p})
			}
			r := llm.NewRouter(backends, nil, llm.Defaults{})
			_, _, err := route(context.Background(), r, core.CapChat, core.ModelSelector{Models: []string{"m:1b"}})
			if core.ErrorCode(err) != tt.wantCode {
				t.Fatalf("error = %v (code %q), want code %q", err, core.ErrorCode(err), tt.wantCode)
			}
			if core.IsUpstream(err) != tt.wantUpstream {
				t.Errorf("IsUpstream(%v) = %v, want %v", err, core.IsUpstream(err), tt.wantUpstream)
			}
			for _, s := range tt.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			for _, p := range tt.backends {
				if want, ok := tt.wantCalls[p.name]; ok && fmt.Sprint(p.called()) != fmt.Sprint(want) {
					t.Errorf("backend %s got calls %q, want %q", p.name, p.called(), want)
				}
			}
		})
	}
}

// TestRouterUpstreamOverLoopback checks the same over both protocols, with
// the providers making the errors from what a fake server answers.
func TestRouterUpstreamOverLoopback(t *testing.T) {
	for _, protocol := range []string{"ollama", "openai"} {
		for _, tt := range []struct {
			name         string
			first        fakellm.Reply
			secondDown   bool
			second       fakellm.Reply
			wantCode     string
			wantUpstream bool
			wantSecond   int // requests the second backend served
		}{
			{name: "a 401 ends the request", first: fakellm.Reply{Status: 401, Text: "bad key"},
				wantCode: core.EINVALID, wantUpstream: true},
			{name: "a 400 ends the request", first: fakellm.Reply{Status: 400, Text: "bad options"},
				wantCode: core.EINVALID, wantUpstream: true},
			{name: "500 from both", first: fakellm.Reply{Status: 500}, second: fakellm.Reply{Status: 502},
				wantCode: core.EUNAVAILABLE, wantUpstream: true, wantSecond: 1},
			{name: "503 from both", first: fakellm.Reply{Status: 503}, second: fakellm.Reply{Status: 503},
				wantCode: core.EUNAVAILABLE, wantSecond: 1},
			{name: "429 from both", first: fakellm.Reply{Status: 429}, second: fakellm.Reply{Status: 429},
				wantCode: core.EUNAVAILABLE, wantSecond: 1},
			{name: "500 beside a backend that is down", first: fakellm.Reply{Status: 500}, secondDown: true,
				wantCode: core.EUNAVAILABLE},
			{name: "404 from both", first: fakellm.Reply{Status: 404}, second: fakellm.Reply{Status: 404},
				wantCode: core.ENOTFOUND, wantSecond: 1},
		} {
			t.Run(protocol+": "+tt.name, func(t *testing.T) {
				first, fake1 := liveBackend(t, "first", protocol, false)
				second, fake2 := liveBackend(t, "second", protocol, tt.secondDown)
				fake1.Script(tt.first)
				fake2.Script(tt.second)
				r := llm.NewRouter([]llm.Backend{first, second}, nil, llm.Defaults{})
				_, _, err := route(context.Background(), r, core.CapChat, core.ModelSelector{Models: []string{"llama3.2:1b"}})
				if core.ErrorCode(err) != tt.wantCode {
					t.Fatalf("error = %v (code %q), want code %q", err, core.ErrorCode(err), tt.wantCode)
				}
				if core.IsUpstream(err) != tt.wantUpstream {
					t.Errorf("IsUpstream(%v) = %v, want %v", err, core.IsUpstream(err), tt.wantUpstream)
				}
				if !strings.Contains(err.Error(), fake1.URL()) || !strings.Contains(err.Error(), "llama3.2:1b") {
					t.Errorf("error %q does not name the first backend's URL and the model", err)
				}
				if n := served(fake2); !tt.secondDown && n != tt.wantSecond {
					t.Errorf("the second backend saw %d requests, want %d", n, tt.wantSecond)
				}
			})
		}
	}
}
