package lambdaenv_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/functions/internal/lambdaenv"
)

// minimal is the smallest valid environment.
func minimal() map[string]string {
	return map[string]string{
		"STEPWISE_TABLE":     "stepwise",
		"STEPWISE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/stepwise-work",
	}
}

func TestLoadNamesTheVariable(t *testing.T) {
	const secret = "not-a-key-but-still-secret"
	tests := []struct {
		name, variable, value string
	}{
		{"table missing", "STEPWISE_TABLE", ""},
		{"queue missing", "STEPWISE_QUEUE_URL", ""},
		{"queue not a URL", "STEPWISE_QUEUE_URL", "stepwise-work"},
		{"secret key malformed", "STEPWISE_SECRET_KEY", secret},
		{"secret key too short", "STEPWISE_SECRET_KEY", "AAAA"},
		{"unknown routing policy", "STEPWISE_ROUTING_POLICY", "fastest"},
		{"sync timeout not a duration", "STEPWISE_SYNC_TIMEOUT", "25"},
		{"sync timeout over API Gateway's limit", "STEPWISE_SYNC_TIMEOUT", "30s"},
		{"margin negative", "STEPWISE_DELIVERY_MARGIN", "-1s"},
		{"log level", "STEPWISE_LOG_LEVEL", "loud"},
		{"provider", "TASK_PROVIDER", "acme"},
		{"context length", "CHAT_MODEL_CONTEXT_LENGTH", "lots"},
		{"ollama URL", "OLLAMA_BACKEND_URL", "localhost:11434"},
		{"endpoint URL", "AWS_ENDPOINT_URL", "127.0.0.1:4566"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := minimal()
			vars[tt.variable] = tt.value
			_, err := lambdaenv.Load(context.Background(), func(k string) string { return vars[k] })
			if err == nil {
				t.Fatalf("%s=%q loaded", tt.variable, tt.value)
			}
			if !strings.HasPrefix(err.Error(), tt.variable+":") {
				t.Errorf("error %q does not start with %s", err, tt.variable)
			}
			if core.ErrorCode(err) != core.EINVALID {
				t.Errorf("code %s, want EINVALID", core.ErrorCode(err))
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q repeats the secret key", err)
			}
		})
	}
}

func TestParseSettingsDefaults(t *testing.T) {
	s, err := lambdaenv.ParseSettings(func(k string) string { return minimal()[k] })
	if err != nil {
		t.Fatal(err)
	}
	if s.Policy != core.PolicyOrdered || s.SyncTimeout != 25*time.Second || s.Margin != core.DefaultDeadlineMargin || s.SecretKey != nil || s.Endpoint != "" {
		t.Errorf("defaults: %+v", s)
	}
}
