package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core/catalog"
)

// testEnv is an env with the given variables and working directory.
func testEnv(dir string, vars map[string]string) env {
	return env{stderr: &bytes.Buffer{}, getenv: func(k string) string { return vars[k] }, workdir: dir}
}

func TestParseServeFlags(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		vars    map[string]string
		check   func(t *testing.T, o *serveOptions)
		wantErr string
	}{
		{name: "Defaults", check: func(t *testing.T, o *serveOptions) {
			if o.addr != defaultAddr || o.dbPath != filepath.Join(dir, ".stepwise", "stepwise.db") || o.keyFile != filepath.Join(dir, ".stepwise", "secret.key") {
				t.Errorf("addr %q db %q key %q", o.addr, o.dbPath, o.keyFile)
			}
		}},
		{name: "KeyFileBesideTheDB", args: []string{"-db", "/data/x.db"}, check: func(t *testing.T, o *serveOptions) {
			if o.keyFile != "/data/secret.key" {
				t.Errorf("key file %q, want it beside the db", o.keyFile)
			}
		}},
		{name: "SeedVariables", vars: map[string]string{
			"TASK_MODEL": "phi3:3.8b", "TASK_PROVIDER": "Ollama", "TASK_MODEL_CONTEXT_LENGTH": "4096",
			"EMBED_MODEL": "nomic-embed-text:latest", "OLLAMA_BACKEND_URL": "http://ollama:11434",
			"STEPWISE_OPENAI_BASE_URL": "https://gateway.example/v1",
		}, check: func(t *testing.T, o *serveOptions) {
			want := catalog.DefaultModel{Name: "phi3:3.8b", Provider: "ollama", ContextLength: 4096}
			if o.defaults.Task != want || o.defaults.Embed.ContextLength != catalog.DefaultContextLength || o.ollamaURL != "http://ollama:11434" || o.ollamaName != "local-ollama" {
				t.Errorf("defaults %+v, ollama %q %q", o.defaults, o.ollamaURL, o.ollamaName)
			}
			if o.providerURLs[catalog.ProviderOpenAI] != "https://gateway.example/v1" {
				t.Errorf("provider URLs %v", o.providerURLs)
			}
		}},
		{name: "BadContextLength", vars: map[string]string{"CHAT_MODEL_CONTEXT_LENGTH": "lots"}, wantErr: "CHAT_MODEL_CONTEXT_LENGTH"},
		{name: "BadProvider", vars: map[string]string{"EMBED_PROVIDER": "bedrock"}, wantErr: `EMBED_PROVIDER: "bedrock"`},
		{name: "BadProviderURL", vars: map[string]string{"STEPWISE_GEMINI_BASE_URL": "notaurl"}, wantErr: "STEPWISE_GEMINI_BASE_URL"},
		{name: "BadPolicy", args: []string{"-routing-policy", "fastest"}, wantErr: "-routing-policy"},
		{name: "BadLogLevel", args: []string{"-log-level", "loud"}, wantErr: "-log-level"},
		{name: "StrayArgument", args: []string{"now"}, wantErr: `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseServeFlags(tt.args, testEnv(dir, tt.vars))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, o)
		})
	}
}

func TestSecretKey(t *testing.T) {
	t.Run("CreatedOnceThenReused", func(t *testing.T) {
		o := &serveOptions{keyFile: filepath.Join(t.TempDir(), "sub", "secret.key")}
		first, err := secretKey(o)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(o.keyFile)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("key file %v, mode %v; want 0600", err, st.Mode().Perm())
		}
		again, err := secretKey(o)
		if err != nil || !bytes.Equal(first, again) || len(first) != 32 {
			t.Errorf("second read gave another key (%v)", err)
		}
	})
	t.Run("FromEnvironment", func(t *testing.T) {
		want := bytes.Repeat([]byte{7}, 32)
		o := &serveOptions{keyFile: filepath.Join(t.TempDir(), "unused"), secretKey: base64.StdEncoding.EncodeToString(want)}
		got, err := secretKey(o)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("key %x, %v", got, err)
		}
		if _, err := os.Stat(o.keyFile); !os.IsNotExist(err) {
			t.Error("a key file was written although STEPWISE_SECRET_KEY is set")
		}
	})
	t.Run("Malformed", func(t *testing.T) {
		for name, o := range map[string]*serveOptions{
			"STEPWISE_SECRET_KEY": {secretKey: "short"},
			"secret key file":     {keyFile: writeFile(t, "not a key\n")},
		} {
			if _, err := secretKey(o); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s: err = %v", name, err)
			}
		}
	})
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
