package access

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"

	"github.com/stepwise-run/stepwise/core"
)

// BootstrapSecret is the secret of the first key of an install where the
// server cannot print one (a Lambda function): derived from the key that
// seals provider keys, which the operator holds already, so that `stepwise
// keys bootstrap-secret` shows it from that key and nothing else need be
// stored or granted. Whoever holds the sealing key can read every provider
// key anyway; revoke the bootstrap key once keys of your own exist.
func BootstrapSecret(sealKey []byte) string {
	m := hmac.New(sha256.New, sealKey)
	m.Write([]byte("stepwise bootstrap API key v1"))
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:24])
}

// Bootstrap makes the operator and admin key of the default tenant whose
// secret is secret, when no key exists yet; it reports whether it did. A
// store that has keys (the bootstrap key itself, revoked or not) is left
// as it is.
func (k *Keys) Bootstrap(ctx context.Context, secret string) (bool, error) {
	if !strings.HasPrefix(secret, SecretPrefix) || len(secret) < len(SecretPrefix)+32 {
		return false, core.Errorf(core.EINVALID, "a bootstrap secret begins with %s and has 32 more characters", SecretPrefix)
	}
	exists, err := k.Any(ctx)
	if err != nil || exists {
		return false, err
	}
	_, err = k.create(ctx, core.DefaultTenant, Spec{Name: "bootstrap", Scopes: []Scope{ScopeOperator, ScopeAdmin}}, secret)
	if core.ErrorCode(err) == core.ECONFLICT {
		return false, nil // another cold start made it meanwhile
	}
	return err == nil, err
}
