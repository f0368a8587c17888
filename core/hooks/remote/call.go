package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks/internal/reply"
)

// MaxReply is the most of a hook's answer that is read: the answer lands
// in a checkpoint and often in a prompt.
const MaxReply = 1 << 20

// request builds the HTTP request of one call of op with the call's
// arguments. Path parameters are escaped and may not be "." or "..", so
// a model cannot step out of the operation's path; the URL stays on the
// hook's endpoint whatever the arguments say.
func (c *hookClient) request(ctx context.Context, op *operation, args map[string]any, idempotencyKey string) (*http.Request, error) {
	base, err := url.Parse(c.hook.EndpointURL)
	if err != nil {
		return nil, core.Errorf(core.EINVALID, "endpointUrl: not a URL")
	}
	injected := map[string]map[string]string{InPath: {}, InQuery: {}, InHeader: {}, InBody: {}}
	for _, p := range c.hook.Properties {
		injected[p.In][p.Name] = p.Value
	}
	args = copyArgs(args)
	path := op.path
	query := url.Values{}
	header := http.Header{}
	for _, p := range op.params {
		v, ok := args[p.name]
		delete(args, p.name)
		if !ok {
			if p.required {
				return nil, core.Errorf(core.EINVALID, "%s: required (%s parameter)", p.name, p.in)
			}
			continue
		}
		text := argText(v)
		switch p.in {
		case InPath:
			if text == "" || text == "." || text == ".." {
				return nil, core.Errorf(core.EINVALID, "%s: %q is not a path segment", p.name, text)
			}
			path = strings.ReplaceAll(path, "{"+p.name+"}", url.PathEscape(text))
		case InQuery:
			if list, ok := v.([]any); ok {
				for _, item := range list {
					query.Add(p.name, argText(item))
				}
			} else {
				query.Set(p.name, text)
			}
		case InHeader:
			if !reply.ValidHeaderName(p.name) || strings.ContainsAny(text, "\r\n\x00") {
				return nil, core.Errorf(core.EINVALID, "%s: not a valid header value", p.name)
			}
			header.Set(p.name, text)
		}
	}
	for name, v := range injected[InPath] {
		path = strings.ReplaceAll(path, "{"+name+"}", url.PathEscape(v))
	}
	if strings.Contains(path, "{") {
		return nil, core.Errorf(core.EINVALID, "the operation's path %s has parameters left unset", op.path)
	}
	for name, v := range injected[InQuery] {
		query.Set(name, v)
	}
	u := *base
	// path holds escaped arguments: it is the URL's raw path.
	u.RawPath = strings.TrimRight(base.EscapedPath(), "/") + c.spec.basePath + path
	if u.Path, err = url.PathUnescape(u.RawPath); err != nil {
		return nil, core.Errorf(core.EINVALID, "the operation's path %s is not a valid URL path", op.path)
	}
	u.RawQuery = query.Encode()
	if u.Scheme != base.Scheme || u.Host != base.Host {
		return nil, core.Errorf(core.EINVALID, "the call would leave the hook's endpoint")
	}

	var body io.Reader
	if op.body {
		var payload any
		if op.bodyObject {
			obj := map[string]any{}
			for k, v := range args {
				if op.bodyProps[k] {
					obj[k] = v
				}
			}
			payload = obj
		} else {
			payload = args["body"]
		}
		if obj, ok := payload.(map[string]any); ok || payload == nil {
			if obj == nil {
				obj = map[string]any{}
			}
			for name, v := range injected[InBody] {
				obj[name] = v
			}
			payload = obj
		}
		b, err := json.Marshal(payload)
		if err != nil {
			return nil, core.WrapError(core.EINVALID, err, "the request body")
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, op.method, u.String(), body)
	if err != nil {
		return nil, core.WrapError(core.EINVALID, err, "remote hook %s", c.hook.Name)
	}
	req.Header = header
	if op.body {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "stepwise-remote-hook")
	for k, v := range c.hook.Headers {
		req.Header.Set(k, v)
	}
	for k, v := range injected[InHeader] {
		req.Header.Set(k, v)
	}
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	return req, nil
}

func copyArgs(args map[string]any) map[string]any {
	out := make(map[string]any, len(args))
	for k, v := range args {
		out[k] = v
	}
	return out
}

// argText is an argument as it goes in a URL or a header.
func argText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	case json.Number:
		return x.String()
	case float64, bool, int, int64:
		return fmt.Sprint(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// do sends req and reads the answer: JSON becomes a json value, any other
// body a string; both with the hook's injected values scrubbed, since an
// echoing service would otherwise hand them to the model. A redirect is
// not followed, and like any status outside 2xx is an error.
func (c *hookClient) do(req *http.Request, target string) (core.Value, error) {
	resp, err := c.client.Do(req)
	if err != nil {
		var ce *core.Error
		if errors.As(err, &ce) {
			return core.Value{}, ce
		}
		if req.Context().Err() != nil {
			return core.Value{}, core.WrapError(core.ETIMEOUT, err, "remote hook %s: %s", c.hook.Name, target)
		}
		return core.Value{}, core.WrapError(core.EUNAVAILABLE, scrubErr(err, req), "remote hook %s: %s", c.hook.Name, target)
	}
	defer func() { _ = resp.Body.Close() }()
	data, cut, err := reply.ReadCapped(resp.Body, MaxReply)
	if err != nil {
		return core.Value{}, core.WrapError(core.EUNAVAILABLE, err, "remote hook %s: %s: reading the answer", c.hook.Name, target)
	}
	text := scrub(c.hook, string(data))
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
	case code >= 300 && code < 400:
		return core.Value{}, core.Upstream(core.Errorf(core.EINVALID, "remote hook %s: %s answered %s, a redirect, which is not followed", c.hook.Name, target, resp.Status))
	default:
		errCode := core.EINVALID
		if code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 {
			errCode = core.EUNAVAILABLE
		}
		return core.Value{}, core.Upstream(core.Errorf(errCode, "remote hook %s: %s answered %s: %s", c.hook.Name, target, resp.Status, reply.Brief([]byte(text), 500)))
	}
	if cut {
		return core.String(text + fmt.Sprintf("\n[stepwise: answer cut at %d bytes]", MaxReply)), nil
	}
	if v, ok := reply.Decode([]byte(text), resp.Header.Get("Content-Type")); ok {
		return core.Value{Type: core.TypeJSON, Data: v}, nil
	}
	return core.String(text), nil
}

// scrub replaces the hook's injected values in text.
func scrub(h *Hook, text string) string {
	for _, s := range h.secrets() {
		if len(s) >= 4 {
			text = strings.ReplaceAll(text, s, SealedValue)
			text = strings.ReplaceAll(text, url.QueryEscape(s), SealedValue)
		}
	}
	return text
}

// scrubErr drops the query from a transport error's URL: injected query
// values must not reach logs.
func scrubErr(err error, req *http.Request) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		u := *req.URL
		u.RawQuery = ""
		return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
	}
	return err
}

// redactQuery is a URL without its query, for messages.
func redactQuery(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "the document"
	}
	u.RawQuery = ""
	return u.String()
}
