package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/seal"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// TestSetUpKeys: without keys a server serves loopback only; -auth makes
// and prints the first key once; a database with keys always requires
// them.
func TestSetUpKeys(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	for _, tt := range []struct {
		name    string
		addr    string
		auth    bool
		hasKeys bool
		wantErr string
		wantOn  bool
	}{
		{name: "loopback, no keys: open", addr: "127.0.0.1:8081"},
		{name: "localhost, no keys: open", addr: "localhost:8081"},
		{name: "ipv6 loopback, no keys: open", addr: "[::1]:8081"},
		{name: "all interfaces, no keys: refused", addr: ":8081", wantErr: "not a loopback address"},
		{name: "a LAN address, no keys: refused", addr: "192.168.1.5:8081", wantErr: "-auth"},
		{name: "all interfaces with -auth", addr: "0.0.0.0:8081", auth: true, wantOn: true},
		{name: "all interfaces, keys in the database", addr: "0.0.0.0:8081", hasKeys: true, wantOn: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := mem.New()
			if tt.hasKeys {
				if _, _, err := access.New(access.Config{Store: store}).Create(ctx, "default", access.Spec{Name: "k", Scopes: []access.Scope{access.ScopeAdmin}}); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			keys, err := setUpKeys(ctx, &serveOptions{addr: tt.addr, auth: tt.auth, stderr: &out}, store, log)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to say %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || (keys != nil) != tt.wantOn {
				t.Fatalf("keys %v, err %v; want keys required: %v", keys != nil, err, tt.wantOn)
			}
			printed := strings.Contains(out.String(), access.SecretPrefix)
			if printed != (tt.auth && !tt.hasKeys) {
				t.Fatalf("printed a key: %v (%q)", printed, out.String())
			}
			if printed {
				secret := strings.Fields(out.String()[strings.Index(out.String(), access.SecretPrefix):])[0]
				k, err := keys.Authenticate(ctx, secret)
				if err != nil || !k.Has(access.ScopeOperator) || !k.Has(access.ScopeAdmin) {
					t.Errorf("the printed key: %+v, %v", k, err)
				}
				if again, _ := setUpKeys(ctx, &serveOptions{addr: tt.addr, auth: true, stderr: &out}, store, log); again == nil || strings.Count(out.String(), access.SecretPrefix) != 1 {
					t.Errorf("a second start printed another key: %q", out.String())
				}
			}
		})
	}
}

func TestKeysBootstrapSecret(t *testing.T) {
	key := seal.GenerateKey()
	file := filepath.Join(t.TempDir(), "secret.key")
	if err := os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		code int
	}{
		{"from a file", []string{"bootstrap-secret", "-secret-key-file", file}, nil, exitOK},
		{"from the environment", []string{"bootstrap-secret"}, map[string]string{"STEPWISE_SECRET_KEY": base64.StdEncoding.EncodeToString(key)}, exitOK},
		{"no key", []string{"bootstrap-secret"}, nil, exitUsage},
		{"no subcommand", nil, nil, exitUsage},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			e := env{stdout: &out, stderr: &errOut, getenv: func(k string) string { return tt.env[k] }}
			if code := dispatch(context.Background(), append([]string{"keys"}, tt.args...), e); code != tt.code {
				t.Fatalf("exit %d (%s), want %d", code, errOut.String(), tt.code)
			}
			if tt.code == exitOK && strings.TrimSpace(out.String()) != access.BootstrapSecret(key) {
				t.Errorf("printed %q", out.String())
			}
		})
	}
}
