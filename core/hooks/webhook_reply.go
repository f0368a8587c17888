package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/stepwise-run/stepwise/core"
)

// webhookBrief is how much of a failing reply an error quotes.
const webhookBrief = 200

// webhookReply turns a webhook's reply into the hook's result.
func webhookReply(r *webhookRequest, resp *http.Response, data []byte, truncated bool) (core.Value, error) {
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
	case code >= 300 && code < 400:
		return core.Value{}, core.Upstream(core.Errorf(core.EINVALID,
			"webhook %s answered %s, a redirect to %q, which is not followed: set args.url to the final address",
			r.target(), resp.Status, brief([]byte(resp.Header.Get("Location")))))
	default:
		errCode := core.EINVALID
		if code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 || code < 200 {
			errCode = core.EUNAVAILABLE
		}
		return core.Value{}, core.Upstream(core.Errorf(errCode, "webhook %s answered %s: %s", r.target(), resp.Status, brief(data)))
	}
	if truncated {
		return core.String(string(data) + fmt.Sprintf("\n[stepwise: reply truncated at %d bytes]", webhookMaxReply)), nil
	}
	if v, ok := decodeReply(data, isJSONMedia(resp.Header.Get("Content-Type"))); ok {
		return core.Value{Type: core.TypeJSON, Data: v}, nil
	}
	return core.String(string(data)), nil
}

// decodeReply decodes a reply body as JSON, keeping numbers exact. A
// reply labelled JSON may be any JSON value; an unlabelled or text one
// counts as JSON only if it is an object or array, so that a plain-text
// "42" or "ok" stays the string it was meant as.
func decodeReply(data []byte, labelled bool) (any, bool) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || !labelled && trimmed[0] != '{' && trimmed[0] != '[' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, false
	}
	return v, true
}

// isJSONMedia reports whether a Content-Type names JSON
// (application/json or a +json type).
func isJSONMedia(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// readCapped reads at most limit bytes of r, reporting whether there was
// more. A cut lands on a rune boundary so that the text stays valid UTF-8.
// The rest of a longer body is never read.
func readCapped(r io.Reader, limit int) ([]byte, bool, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil || len(data) <= limit {
		return data, false, err
	}
	cut := limit
	for i := limit; i > limit-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(data[i]) {
			cut = i
			break
		}
	}
	return data[:cut], true, nil
}

// transportError classifies a failure to get a reply. The *url.Error the
// client wraps around failures is dropped, since its text repeats the
// whole URL, query and all.
func transportError(parent, callCtx context.Context, r *webhookRequest, err error) error {
	if parent.Err() != nil {
		return core.WrapError(core.ETIMEOUT, parent.Err(), "webhook %s: the call was abandoned", r.target())
	}
	if callCtx.Err() != nil {
		return core.Errorf(core.ETIMEOUT, "webhook %s: no reply within %s (args.timeout)", r.target(), r.timeout)
	}
	var ce *core.Error
	if errors.As(err, &ce) {
		return core.WrapError(ce.Code, ce, "webhook %s", r.target())
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return core.WrapError(core.EUNAVAILABLE, err, "webhook %s", r.target())
}

// brief renders the start of a reply for an error message: one line, valid
// UTF-8, at most webhookBrief bytes.
func brief(data []byte) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(data), "\uFFFD")), " ")
	if len(s) <= webhookBrief {
		return s
	}
	cut := webhookBrief
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
