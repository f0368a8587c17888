package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Signature schemes a mapping can check.
const (
	// SchemeGitHub: X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the
	// body>.
	SchemeGitHub = "github"
	// SchemeStripe: Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
	// "t.body">, within the tolerance.
	SchemeStripe = "stripe"
	// SchemeStandard: Standard Webhooks' webhook-id, webhook-timestamp
	// and webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">
	// with the secret's whsec_ key.
	SchemeStandard = "standard"
	// SchemeHMAC: a header (default X-Signature) of the hex HMAC-SHA256
	// of the body, with or without "sha256=".
	SchemeHMAC = "hmac-sha256"
)

// SignatureTolerance is how old or new a signed timestamp may be.
const SignatureTolerance = 5 * time.Minute

// Signature is how a mapping's deliveries are signed.
type Signature struct {
	Scheme string `json:"scheme"`
	// Secret is the shared secret; write-only (stores seal it).
	Secret string `json:"secret"`
	// Header overrides the scheme's header (SchemeHMAC).
	Header string `json:"header,omitempty"`
}

func (s *Signature) check() error {
	switch s.Scheme {
	case SchemeGitHub, SchemeStripe, SchemeStandard, SchemeHMAC:
	default:
		return fmt.Errorf("scheme: %q is not one of github, stripe, standard, hmac-sha256", s.Scheme)
	}
	if s.Secret == "" {
		return errors.New("secret: required")
	}
	return nil
}

// SignsID reports whether the scheme signs the delivery's id or time, so
// that a captured delivery cannot be sent again as a new one.
func (s *Signature) SignsID() bool { return s.Scheme == SchemeStripe || s.Scheme == SchemeStandard }

// ErrBadSignature is the error of a delivery whose signature is missing,
// wrong or too old.
var ErrBadSignature = errors.New("signature")

// Verify checks a delivery's signature over its raw body; now is the
// clock for the schemes that sign a timestamp.
func (s *Signature) Verify(body []byte, h http.Header, now time.Time) error {
	mac := func(key []byte, parts ...string) []byte {
		m := hmac.New(sha256.New, key)
		for i, p := range parts {
			if i > 0 {
				m.Write([]byte("."))
			}
			m.Write([]byte(p))
		}
		m.Write(body)
		return m.Sum(nil)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadSignature, fmt.Sprintf(format, args...))
	}
	switch s.Scheme {
	case SchemeGitHub, SchemeHMAC:
		name := "X-Hub-Signature-256"
		if s.Scheme == SchemeHMAC {
			name = "X-Signature"
			if s.Header != "" {
				name = s.Header
			}
		}
		got := strings.TrimPrefix(h.Get(name), "sha256=")
		sig, err := hex.DecodeString(got)
		if got == "" || err != nil {
			return fail("%s is missing or not hex", name)
		}
		if !hmac.Equal(sig, mac([]byte(s.Secret))) {
			return fail("%s does not match the body", name)
		}
	case SchemeStripe:
		var ts string
		var sigs [][]byte
		for _, part := range strings.Split(h.Get("Stripe-Signature"), ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch k {
			case "t":
				ts = v
			case "v1":
				if b, err := hex.DecodeString(v); err == nil {
					sigs = append(sigs, b)
				}
			}
		}
		if err := fresh(ts, now); err != nil {
			return fail("Stripe-Signature: %v", err)
		}
		want := mac([]byte(s.Secret), ts, "")
		for _, sig := range sigs {
			if hmac.Equal(sig, want) {
				return nil
			}
		}
		return fail("Stripe-Signature has no v1 signature that matches the body")
	case SchemeStandard:
		id, ts := h.Get("Webhook-Id"), h.Get("Webhook-Timestamp")
		if id == "" {
			return fail("webhook-id is missing")
		}
		if err := fresh(ts, now); err != nil {
			return fail("webhook-timestamp: %v", err)
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s.Secret, "whsec_"))
		if err != nil {
			key = []byte(s.Secret)
		}
		want := mac(key, id, ts, "")
		for _, sig := range strings.Fields(h.Get("Webhook-Signature")) {
			v, b64, _ := strings.Cut(sig, ",")
			b, err := base64.StdEncoding.DecodeString(b64)
			if v == "v1" && err == nil && hmac.Equal(b, want) {
				return nil
			}
		}
		return fail("webhook-signature has no v1 signature that matches the body")
	default:
		return fail("unknown scheme %q", s.Scheme)
	}
	return nil
}

// fresh checks a signed unix timestamp against the tolerance.
func fresh(ts string, now time.Time) error {
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("no timestamp")
	}
	if d := now.Sub(time.Unix(n, 0)); d > SignatureTolerance || d < -SignatureTolerance {
		return fmt.Errorf("the timestamp is %s away from now, more than %s", d.Round(time.Second), SignatureTolerance)
	}
	return nil
}
