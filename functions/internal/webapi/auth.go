package webapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/meter"
)

// Authenticator finds the key a secret belongs to (access.Keys).
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (*access.Key, error)
}

// Need is what a route asks of its caller.
type Need struct {
	// Open routes take no key (/health).
	Open bool
	// Scope is the scope the key must have; "" takes any valid key.
	Scope access.Scope
}

type keyKey struct{}

// Key returns the key a request was made with; nil when the route is open
// or the server runs without keys.
func Key(ctx context.Context) *access.Key {
	k, _ := ctx.Value(keyKey{}).(*access.Key)
	return k
}

// KeyID is the id of the request's key, "" without one.
func KeyID(ctx context.Context) string {
	if k := Key(ctx); k != nil {
		return k.ID
	}
	return ""
}

// Authenticate puts key checks in front of h: need tells what each
// request's route asks, fail answers a refusal in the function's error
// envelope. A key comes as `Authorization: Bearer <secret>` (how the
// OpenAI SDKs send theirs) or, for clients built for other APIs, in an
// `api-key` or `x-api-key` header. A request with a valid key acts for the
// key's tenant. With keys nil, h is returned as it is: every route is
// open and acts for the default tenant.
func Authenticate(h http.Handler, keys Authenticator, need func(*http.Request) Need, fail func(http.ResponseWriter, *http.Request, error)) http.Handler {
	if keys == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := need(r)
		if n.Open {
			h.ServeHTTP(w, r)
			return
		}
		secret := Bearer(r)
		if secret == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stepwise"`)
			fail(w, r, core.Errorf(core.EUNAUTHORIZED, "no API key: send it as Authorization: Bearer %s…", access.SecretPrefix))
			return
		}
		key, err := keys.Authenticate(r.Context(), secret)
		if err != nil {
			if core.ErrorCode(err) == core.EUNAUTHORIZED {
				w.Header().Set("WWW-Authenticate", `Bearer realm="stepwise", error="invalid_token"`)
			}
			fail(w, r, err)
			return
		}
		if n.Scope != "" && !key.Has(n.Scope) {
			fail(w, r, core.Errorf(core.EFORBIDDEN, "API key %s lacks the %s scope that %s %s needs", key.ID, n.Scope, r.Method, r.URL.Path))
			return
		}
		ctx := context.WithValue(WithTenant(r.Context(), key.Tenant), keyKey{}, key)
		Logger(ctx).Debug("authenticated", "key", key.ID, "tenant", key.Tenant)
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Bearer returns the API key a request carries (Authorization: Bearer,
// api-key or x-api-key), or "".
func Bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, secret, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(secret)
		}
		return ""
	}
	if s := r.Header.Get("api-key"); s != "" {
		return strings.TrimSpace(s)
	}
	return strings.TrimSpace(r.Header.Get("x-api-key"))
}

// RetryAfter sets Retry-After on the answer to a call that a budget or a
// rate limit refused (a *meter.LimitError): the seconds until its window
// moves on, at least 1.
func RetryAfter(w http.ResponseWriter, err error) {
	var le *meter.LimitError
	if errors.As(err, &le) {
		secs := int64((le.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	}
}

// Allowed checks a key's allowed chains or models: nil when the request's
// key (if any) may use it, else EFORBIDDEN naming it. what is "chain" or
// "model".
func Allowed(ctx context.Context, what, name string) error {
	k := Key(ctx)
	if k == nil {
		return nil
	}
	ok := k.AllowsModel(name)
	if what == "chain" {
		ok = k.AllowsChain(name)
	}
	if !ok {
		return core.Errorf(core.EFORBIDDEN, "API key %s may not use %s %q", k.ID, what, name)
	}
	return nil
}
