package hooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks/internal/reply"
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
			r.target(), resp.Status, reply.Brief([]byte(resp.Header.Get("Location")), webhookBrief)))
	default:
		errCode := core.EINVALID
		if code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 || code < 200 {
			errCode = core.EUNAVAILABLE
		}
		return core.Value{}, core.Upstream(core.Errorf(errCode, "webhook %s answered %s: %s", r.target(), resp.Status, reply.Brief(data, webhookBrief)))
	}
	if truncated {
		return core.String(string(data) + fmt.Sprintf("\n[stepwise: reply truncated at %d bytes]", webhookMaxReply)), nil
	}
	if v, ok := reply.Decode(data, resp.Header.Get("Content-Type")); ok {
		return core.Value{Type: core.TypeJSON, Data: v}, nil
	}
	return core.String(string(data)), nil
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
