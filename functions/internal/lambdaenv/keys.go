package lambdaenv

import (
	"context"
	"log/slog"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
)

// setUpKeys decides, at cold start, whether the functions require API
// keys: with STEPWISE_AUTH=on, or when the table has keys. A table without
// keys under STEPWISE_AUTH=on gets the bootstrap key, whose secret is
// derived from the secret key (access.BootstrapSecret; `stepwise keys
// bootstrap-secret` shows it), since a function has nowhere to print one.
// A key is trusted for access.DefaultCacheTTL, so a revocation reaches
// every warm function within it.
func setUpKeys(ctx context.Context, s Settings, store core.RecordStore, log *slog.Logger) (*access.Keys, error) {
	keys := access.New(access.Config{Store: store})
	exists, err := keys.Any(ctx)
	if err != nil {
		return nil, core.WrapError(core.ErrorCode(err), err, "look for API keys in table %s", s.Table)
	}
	if !s.Auth {
		if exists {
			return keys, nil
		}
		return nil, nil
	}
	if !exists {
		if s.SecretKey == nil {
			return nil, core.Errorf(core.EINVALID, "%s=on needs the secret key (%s or %s): the first API key is derived from it", VarAuth, VarSecretKeyARN, VarSecretKey)
		}
		made, err := keys.Bootstrap(ctx, access.BootstrapSecret(s.SecretKey))
		if err != nil {
			return nil, core.WrapError(core.ErrorCode(err), err, "make the bootstrap API key")
		}
		if made {
			log.Warn("made the bootstrap API key (operator, admin): `stepwise keys bootstrap-secret` shows its secret; revoke it once you have keys of your own")
		}
	}
	return keys, nil
}
