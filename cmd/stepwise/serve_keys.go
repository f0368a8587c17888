package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
)

// setUpKeys decides whether the server requires API keys: when -auth asks
// for them, or when the database has some. -auth on a database without
// keys makes the first one (operator and admin of the default tenant) and
// prints its secret once. Without keys a server serves only loopback: on
// any other address anyone on the network could use its backends, so it
// refuses to start. A nil result leaves every route open.
func setUpKeys(ctx context.Context, o *serveOptions, store core.RecordStore, log *slog.Logger) (*access.Keys, error) {
	keys := access.New(access.Config{Store: store})
	exists, err := keys.Any(ctx)
	if err != nil {
		return nil, fmt.Errorf("look for API keys: %w", err)
	}
	switch {
	case exists:
		return keys, nil
	case o.auth:
		key, secret, err := keys.Create(ctx, core.DefaultTenant, access.Spec{Name: "bootstrap",
			Scopes: []access.Scope{access.ScopeOperator, access.ScopeAdmin}})
		if err != nil {
			return nil, fmt.Errorf("make the first API key: %w", err)
		}
		log.Warn("made the first API key; its secret is printed once, on stderr", "key", key.ID, "prefix", key.Prefix)
		w := o.stderr
		if w == nil {
			w = os.Stderr
		}
		fmt.Fprintf(w, "\nstepwise: the first API key (operator, admin) is\n\n    %s\n\nkeep it: it is not shown again. Send it as Authorization: Bearer <key>.\n\n", secret)
		return keys, nil
	case !loopback(o.addr):
		return nil, fmt.Errorf("-addr %s is not a loopback address and the database has no API keys: "+
			"start with -auth (it prints the first key) or listen on 127.0.0.1", o.addr)
	}
	log.Info("no API keys: every route is open on loopback (start with -auth to require keys)")
	return nil, nil
}

// loopback reports whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
