package lambdaenv_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/seal"
	"github.com/stepwise-run/stepwise/functions/internal/lambdaenv"
	"github.com/stepwise-run/stepwise/infra/awsdynamo"
	"github.com/stepwise-run/stepwise/infra/awsmoto"
)

// secretStack is what a cold start with a secret key reads, on moto: the
// table, and the secrets a test creates.
type secretStack struct {
	t       *testing.T
	secrets *secretsmanager.Client
	vars    map[string]string
}

func newSecretStack(t *testing.T) *secretStack {
	t.Helper()
	moto := awsmoto.Start(t)
	cfg := moto.Config()
	if err := awsdynamo.New(dynamodb.NewFromConfig(cfg), "stepwise").CreateTable(context.Background()); err != nil {
		t.Fatalf("create table: %v", err)
	}
	return &secretStack{t: t, secrets: secretsmanager.NewFromConfig(cfg), vars: map[string]string{
		"STEPWISE_TABLE":     "stepwise",
		"STEPWISE_QUEUE_URL": moto.Endpoint + "/123456789012/stepwise-work",
		"AWS_ENDPOINT_URL":   moto.Endpoint,
		"STEPWISE_LOG_LEVEL": "error",
	}}
}

// secret creates a secret holding value as its SecretString (or, with
// binary, its SecretBinary) and returns its ARN.
func (s *secretStack) secret(name, value string, binary bool) string {
	s.t.Helper()
	in := &secretsmanager.CreateSecretInput{Name: aws.String(name)}
	if binary {
		in.SecretBinary = []byte(value)
	} else {
		in.SecretString = aws.String(value)
	}
	out, err := s.secrets.CreateSecret(context.Background(), in)
	if err != nil {
		s.t.Fatalf("create secret %s: %v", name, err)
	}
	return aws.ToString(out.ARN)
}

// load cold-starts a function with the stack's variables and extra.
func (s *secretStack) load(extra map[string]string) (*lambdaenv.Env, error) {
	vars := map[string]string{}
	for k, v := range s.vars {
		vars[k] = v
	}
	for k, v := range extra {
		vars[k] = v
	}
	return lambdaenv.Load(context.Background(), func(k string) string { return vars[k] },
		config.WithRegion(awsmoto.Region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("testing", "testing", "")))
}

// TestSecretKeyFromSecretsManager cold-starts functions whose key is in a
// Secrets Manager secret (STEPWISE_SECRET_KEY_ARN), as the template
// deploys them, and checks that the key is the secret's and is used
// exactly as STEPWISE_SECRET_KEY's would be.
func TestSecretKeyFromSecretsManager(t *testing.T) {
	ctx := context.Background()
	s := newSecretStack(t)
	key := seal.GenerateKey()
	const apiKey = "sk-test-0123456789abcdef"

	tests := []struct {
		name string
		// stored is the SecretString; id picks the secret's ARN or name.
		stored string
		byARN  bool
	}{
		{"hex, by ARN", hex.EncodeToString(key), true},
		{"base64 with a trailing newline, by name", base64.StdEncoding.EncodeToString(key) + "\n", false},
		{"unpadded URL base64, by ARN", base64.RawURLEncoding.EncodeToString(key), true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "stepwise/key-" + string(rune('a'+i))
			id := s.secret(name, tt.stored, false)
			if !tt.byARN {
				id = name
			}
			env, err := s.load(map[string]string{"STEPWISE_SECRET_KEY_ARN": id})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !bytes.Equal(env.Settings.SecretKey, key) {
				t.Fatalf("Settings.SecretKey is not the secret's key")
			}
			if env.Settings.SecretKeyARN != id {
				t.Errorf("Settings.SecretKeyARN = %q, want %q", env.Settings.SecretKeyARN, id)
			}
		})
	}

	t.Run("seals provider keys that STEPWISE_SECRET_KEY opens", func(t *testing.T) {
		fromSecret, err := s.load(map[string]string{"STEPWISE_SECRET_KEY_ARN": s.secret("stepwise/seal", hex.EncodeToString(key), false)})
		if err != nil {
			t.Fatalf("Load with the secret: %v", err)
		}
		if _, err := fromSecret.Catalog.ConfigureProvider(ctx, core.DefaultTenant, catalog.ProviderOpenAI, apiKey, true); err != nil {
			t.Fatalf("ConfigureProvider: %v", err)
		}
		for _, tt := range []struct {
			name  string
			key   []byte
			opens bool
		}{
			{"the same key in STEPWISE_SECRET_KEY", key, true},
			{"another key", seal.GenerateKey(), false},
		} {
			env, err := s.load(map[string]string{"STEPWISE_SECRET_KEY": base64.StdEncoding.EncodeToString(tt.key)})
			if err != nil {
				t.Fatalf("%s: Load: %v", tt.name, err)
			}
			snap, err := env.Catalog.Snapshot(ctx, core.DefaultTenant)
			if err != nil {
				t.Fatalf("%s: Snapshot: %v", tt.name, err)
			}
			if got := snap.Keys[catalog.ProviderOpenAI] == apiKey; got != tt.opens {
				t.Errorf("%s: provider key opened = %v, want %v (errors: %v)", tt.name, got, tt.opens, snap.KeyErrors)
			}
		}
	})
}

// TestSecretKeyErrors checks that a cold start whose key cannot be had
// fails, naming the variable and the secret and never the secret's value.
func TestSecretKeyErrors(t *testing.T) {
	const value = "not-a-key-but-still-secret"
	s := newSecretStack(t)
	malformed := s.secret("stepwise/malformed", value, false)
	short := s.secret("stepwise/short", base64.StdEncoding.EncodeToString(make([]byte, 16)), false)
	binary := s.secret("stepwise/binary", value, true)

	tests := []struct {
		name string
		vars map[string]string
		code string
		// mentions must all be in the message.
		mentions []string
	}{
		{"both variables set",
			map[string]string{"STEPWISE_SECRET_KEY_ARN": malformed, "STEPWISE_SECRET_KEY": hex.EncodeToString(make([]byte, 32))},
			core.EINVALID, []string{"STEPWISE_SECRET_KEY_ARN", "STEPWISE_SECRET_KEY,"}},
		{"missing secret",
			map[string]string{"STEPWISE_SECRET_KEY_ARN": "stepwise/absent"},
			core.ENOTFOUND, []string{`"stepwise/absent"`, "does not exist"}},
		{"missing secret by ARN",
			map[string]string{"STEPWISE_SECRET_KEY_ARN": malformed + "x"},
			core.ENOTFOUND, []string{malformed + "x"}},
		{"malformed value",
			map[string]string{"STEPWISE_SECRET_KEY_ARN": malformed},
			core.EINVALID, []string{malformed}},
		{"key too short",
			map[string]string{"STEPWISE_SECRET_KEY_ARN": short},
			core.EINVALID, []string{short, "32"}},
		{"binary secret",
			map[string]string{"STEPWISE_SECRET_KEY_ARN": binary},
			core.EINVALID, []string{binary, "no SecretString"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := s.load(tt.vars)
			if err == nil {
				t.Fatalf("loaded with key %x", env.Settings.SecretKey)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "STEPWISE_SECRET_KEY_ARN: ") {
				t.Errorf("error %q does not start with the variable", msg)
			}
			for _, m := range tt.mentions {
				if !strings.Contains(msg, m) {
					t.Errorf("error %q does not mention %q", msg, m)
				}
			}
			if core.ErrorCode(err) != tt.code {
				t.Errorf("code %s, want %s (%v)", core.ErrorCode(err), tt.code, err)
			}
			if strings.Contains(msg, value) {
				t.Errorf("error %q repeats the secret's value", msg)
			}
		})
	}
}
