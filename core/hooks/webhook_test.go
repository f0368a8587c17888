package hooks_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks"
)

// received is what a test webhook server saw of one request.
type received struct {
	Method, Path, Query string
	Header              http.Header
	Body                string
}

// recorder is a webhook receiver on 127.0.0.1 that records the requests it
// gets and answers with reply.
type recorder struct {
	mu   sync.Mutex
	reqs []received
	srv  *httptest.Server
}

func newRecorder(t *testing.T, reply http.HandlerFunc) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, received{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), string(b)})
		rec.mu.Unlock()
		reply(w, r)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (rec *recorder) requests() []received {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]received(nil), rec.reqs...)
}

// reply answers with a fixed content type and body.
func reply(status int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// localWebhook is the webhook hook allowed to reach the test servers.
func localWebhook() core.Tools {
	return hooks.NewRegistry(nil, hooks.Webhook(hooks.WebhookConfig{AllowPrivate: true}))
}

func TestWebhookRequest(t *testing.T) {
	hist := core.Value{Type: core.TypeChatHistory, Data: core.ChatHistory{Messages: []core.Message{{Role: "user", Content: "hi"}}}}
	histJSON, _ := json.Marshal(hist.Data)
	tests := []struct {
		name      string
		input     core.Value
		args      map[string]string
		wantMeth  string
		wantQuery string
		wantBody  string // compared as JSON unless empty
	}{
		{"JSONStringSentAsIs", core.String(`{"a":[1,2]}`), nil, "POST", "a=1", `{"a":[1,2]}`},
		{"PlainStringWrapped", core.String("hello"), map[string]string{"channel": "ops", "headers": `{"X-Token":"s3cret"}`}, "POST", "a=1", `{"message":"hello","data":{"channel":"ops"}}`},
		{"EmptyStringWrapped", core.String(""), nil, "POST", "a=1", `{"message":"","data":{}}`},
		{"ToolArgumentsAsJSON", core.Value{Type: core.TypeJSON, Data: map[string]any{"message": "m", "data": map[string]any{"n": json.Number("12345678901234567890")}}}, nil, "POST", "a=1", `{"message":"m","data":{"n":12345678901234567890}}`},
		{"IntAsJSON", core.Value{Type: core.TypeInt, Data: 7}, nil, "POST", "a=1", `7`},
		{"HistoryAsJSON", hist, nil, "POST", "a=1", string(histJSON)},
		{"NilAsNull", core.Nil, nil, "POST", "a=1", `null`},
		{"MethodAndQuery", core.String(`{}`), map[string]string{"method": "put", "query": "b=2&c=x+y"}, "PUT", "a=1&b=2&c=x+y", `{}`},
		{"GetSendsNoBody", core.String("ignored"), map[string]string{"method": "GET"}, "GET", "a=1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t, reply(http.StatusNoContent, "", ""))
			args := map[string]string{"url": rec.srv.URL + "/hook?a=1#fragment"}
			for k, v := range tt.args {
				args[k] = v
			}
			got, err := localWebhook().Call(context.Background(), core.HookCall{Hook: "webhook", Input: tt.input, Args: args, IdempotencyKey: "ex1/3/1"})
			if err != nil || got != core.String("") {
				t.Fatalf("Call = %#v, %v; want an empty string for a 204", got, err)
			}
			reqs := rec.requests()
			if len(reqs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != tt.wantMeth || r.Path != "/hook" || r.Query != tt.wantQuery {
				t.Errorf("request %s %s?%s, want %s /hook?%s", r.Method, r.Path, r.Query, tt.wantMeth, tt.wantQuery)
			}
			if k := r.Header.Get("Idempotency-Key"); k != "ex1/3/1" {
				t.Errorf("Idempotency-Key = %q, want ex1/3/1", k)
			}
			if tt.wantBody == "" {
				if r.Body != "" || r.Header.Get("Content-Type") != "" {
					t.Errorf("GET carried body %q, content type %q", r.Body, r.Header.Get("Content-Type"))
				}
				return
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if !jsonEqual(t, r.Body, tt.wantBody) {
				t.Errorf("body = %s, want %s", r.Body, tt.wantBody)
			}
		})
	}
}

func TestWebhookHeaders(t *testing.T) {
	rec := newRecorder(t, reply(http.StatusOK, "", "ok"))
	args := map[string]string{"url": rec.srv.URL, "headers": `{"Authorization":"Bearer t","Idempotency-Key":"forged","X-Extra":"1"}`}
	if _, err := localWebhook().Call(context.Background(), core.HookCall{Hook: "webhook", Input: core.String("x"), Args: args, IdempotencyKey: "ex/1/1"}); err != nil {
		t.Fatal(err)
	}
	h := rec.requests()[0].Header
	for name, want := range map[string]string{"Authorization": "Bearer t", "X-Extra": "1", "Idempotency-Key": "ex/1/1"} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestWebhookReply(t *testing.T) {
	big := strings.Repeat("é", 1<<20) // 2 MiB of two-byte runes
	tests := []struct {
		name     string
		reply    http.HandlerFunc
		want     core.Value
		wantCode string
		errHas   []string
	}{
		{"JSONObject", reply(200, "application/json", `{"ok":true,"n":12345678901234567890}`), core.Value{Type: core.TypeJSON, Data: map[string]any{"ok": true, "n": json.Number("12345678901234567890")}}, "", nil},
		{"UnlabelledJSONArray", reply(200, "text/plain", `[1,"a"]`), core.Value{Type: core.TypeJSON, Data: []any{json.Number("1"), "a"}}, "", nil},
		{"LabelledJSONScalar", reply(201, "application/problem+json", `42`), core.Value{Type: core.TypeJSON, Data: json.Number("42")}, "", nil},
		{"TextScalarStaysText", reply(200, "text/plain", `42`), core.String("42"), "", nil},
		{"Text", reply(202, "text/plain", "accepted"), core.String("accepted"), "", nil},
		{"BrokenJSONIsText", reply(200, "application/json", `{"a":`), core.String(`{"a":`), "", nil},
		{"ClientError", reply(422, "application/json", `{"error":"bad field"}`), core.Value{}, core.EINVALID, []string{"422", "bad field"}},
		{"ServerError", reply(503, "text/plain", "down for maintenance\n\n  back soon"), core.Value{}, core.EUNAVAILABLE, []string{"503", "down for maintenance back soon"}},
		{"TooManyRequests", reply(429, "", ""), core.Value{}, core.EUNAVAILABLE, []string{"429"}},
		{"LongErrorBodyBrief", reply(500, "", strings.Repeat("x", 5000)), core.Value{}, core.EUNAVAILABLE, []string{"500", strings.Repeat("x", 200) + "…"}},
		{"RedirectNotFollowed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, core.Value{}, core.EINVALID, []string{"302", "/elsewhere", "not followed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t, tt.reply)
			got, err := localWebhook().Call(context.Background(), core.HookCall{Hook: "webhook", Input: core.String("{}"), Args: map[string]string{"url": rec.srv.URL + "/in?token=secret"}})
			if tt.wantCode == "" {
				if err != nil || !reflect.DeepEqual(got, tt.want) {
					t.Errorf("Call = %#v, %v; want %#v", got, err, tt.want)
				}
				return
			}
			if core.ErrorCode(err) != tt.wantCode || !core.IsUpstream(err) {
				t.Fatalf("err = %v (code %s, upstream %v), want upstream %s", err, core.ErrorCode(err), core.IsUpstream(err), tt.wantCode)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q repeats the query string", err)
			}
			if n := len(rec.requests()); n != 1 {
				t.Errorf("server got %d requests, want 1 (a redirect must not be followed)", n)
			}
		})
	}
	t.Run("OversizedReplyCapped", func(t *testing.T) {
		rec := newRecorder(t, reply(200, "application/json", `"`+big+`"`))
		got, err := localWebhook().Call(context.Background(), core.HookCall{Hook: "webhook", Input: core.String("{}"), Args: map[string]string{"url": rec.srv.URL}})
		if err != nil {
			t.Fatal(err)
		}
		s, ok := got.Data.(string)
		if !ok || got.Type != core.TypeString {
			t.Fatalf("a cut reply is %s %T, want a string", got.Type, got.Data)
		}
		text, marker, found := strings.Cut(s, "\n[stepwise: reply truncated at 1048576 bytes]")
		if !found || marker != "" {
			t.Fatalf("reply of %d bytes lacks the truncation marker at its end", len(s))
		}
		if len(text) > 1<<20 || len(text) < 1<<20-4 || !strings.HasPrefix(big, text[1:]) || !utf8.ValidString(text) {
			t.Errorf("kept %d bytes, want about 1 MiB of the reply cut on a rune boundary", len(text))
		}
	})
}

func TestWebhookTimeout(t *testing.T) {
	release := make(chan struct{})
	rec := newRecorder(t, func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server closes
	_, err := localWebhook().Call(context.Background(), core.HookCall{Hook: "webhook", Input: core.String("{}"), Args: map[string]string{"url": rec.srv.URL, "timeout": "50ms"}})
	if core.ErrorCode(err) != core.ETIMEOUT || !strings.Contains(err.Error(), "50ms") {
		t.Errorf("err = %v, want a timeout naming args.timeout", err)
	}
}

func TestWebhookInvalidArgs(t *testing.T) {
	tests := []struct {
		name   string
		args   map[string]string
		errHas string
	}{
		{"NoURL", map[string]string{}, "args.url: required"},
		{"BadScheme", map[string]string{"url": "file:///etc/passwd"}, "args.url: scheme"},
		{"NoHost", map[string]string{"url": "http:///x"}, "args.url: no host"},
		{"Credentials", map[string]string{"url": "http://u:p@example.com/"}, "args.url: credentials"},
		{"Method", map[string]string{"url": "http://example.com", "method": "TRACE"}, "args.method"},
		{"Query", map[string]string{"url": "http://example.com", "query": "a=%zz"}, "args.query"},
		{"HeadersNotJSON", map[string]string{"url": "http://example.com", "headers": "X-A: 1"}, "args.headers"},
		{"HeadersNotStrings", map[string]string{"url": "http://example.com", "headers": `{"X-A":1}`}, "args.headers"},
		{"HeaderInjection", map[string]string{"url": "http://example.com", "headers": `{"X-A":"1\r\nX-B: 2"}`}, "args.headers"},
		{"HeaderName", map[string]string{"url": "http://example.com", "headers": `{"X A":"1"}`}, "args.headers"},
		{"TimeoutWord", map[string]string{"url": "http://example.com", "timeout": "soon"}, "args.timeout"},
		{"TimeoutNegative", map[string]string{"url": "http://example.com", "timeout": "-1s"}, "args.timeout"},
		{"TimeoutHuge", map[string]string{"url": "http://example.com", "timeout": "3600"}, "args.timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := localWebhook().Call(context.Background(), core.HookCall{Hook: "webhook", Input: core.String("x"), Args: tt.args})
			if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("err = %v, want invalid naming %q", err, tt.errHas)
			}
		})
	}
}

func TestWebhookTool(t *testing.T) {
	tools, err := localWebhook().ToolsOf(context.Background(), core.DefaultTenant, "webhook")
	if err != nil || len(tools) != 1 {
		t.Fatalf("ToolsOf = %v, %v", tools, err)
	}
	props, _ := tools[0].Function.Parameters["properties"].(map[string]any)
	var names []string
	for k := range props {
		names = append(names, k)
	}
	if len(names) != 2 || props["message"] == nil || props["data"] == nil {
		t.Errorf("tool parameters %v: want only message and data; the URL and method are not the model's to choose", names)
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	decode := func(s string) any {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var x any
		if err := dec.Decode(&x); err != nil {
			t.Fatalf("not JSON: %s", s)
		}
		return x
	}
	return reflect.DeepEqual(decode(a), decode(b))
}
