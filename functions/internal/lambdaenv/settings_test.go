package lambdaenv_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/events"
	"github.com/stepwise-run/stepwise/functions/internal/lambdaenv"
	"github.com/stepwise-run/stepwise/infra/awsmoto"
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
		{"event bus with a space", "STEPWISE_EVENT_BUS", "my bus"},
		{"auth neither on nor off", "STEPWISE_AUTH", "yes"},
		{"event bus ARN of another service", "STEPWISE_EVENT_BUS", "arn:aws:sqs:us-east-1:123456789012:stepwise"},
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
	if s.Policy != core.PolicyOrdered || s.SyncTimeout != 25*time.Second || s.Margin != core.DefaultDeadlineMargin ||
		s.SecretKey != nil || s.SecretKeyARN != "" || s.EventBus != "" || s.Endpoint != "" {
		t.Errorf("defaults: %+v", s)
	}
}

func TestParseSettingsEventBus(t *testing.T) {
	for _, bus := range []string{
		"stepwise",
		"stepwise-prod/lifecycle_1.0",
		"arn:aws:events:eu-west-1:123456789012:event-bus/stepwise",
		"arn:aws-cn:events:cn-north-1:123456789012:event-bus/stepwise",
	} {
		t.Run(bus, func(t *testing.T) {
			vars := minimal()
			vars["STEPWISE_EVENT_BUS"] = " " + bus + "\n"
			s, err := lambdaenv.ParseSettings(func(k string) string { return vars[k] })
			if err != nil {
				t.Fatal(err)
			}
			if s.EventBus != bus {
				t.Errorf("EventBus = %q, want %q", s.EventBus, bus)
			}
		})
	}
}

// TestEventBusPublishesLifecycleEvents runs a chain through the API
// function of a deployment whose STEPWISE_EVENT_BUS names a bus on the
// emulator, and reads the lifecycle event a rule on that bus delivers; a
// deployment without the variable builds no bus.
func TestEventBusPublishesLifecycleEvents(t *testing.T) {
	ctx := context.Background()
	const bus = "stepwise-lifecycle"
	d := deploy(t, map[string]string{"STEPWISE_EVENT_BUS": bus})
	if d.env.Bus == nil {
		t.Fatal("STEPWISE_EVENT_BUS set, and Env.Bus is nil")
	}
	// The bus does no I/O before it publishes, so it can be created now,
	// on the emulator the deployment's AWS_ENDPOINT_URL points at.
	cfg := aws.Config{Region: awsmoto.Region, BaseEndpoint: aws.String(d.env.Settings.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", "")}
	eb := eventbridge.NewFromConfig(cfg)
	if _, err := eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(bus)}); err != nil {
		t.Fatalf("CreateEventBus: %v", err)
	}
	q, err := d.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("lifecycle")})
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	attrs, err := d.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatalf("GetQueueAttributes: %v", err)
	}
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String("lifecycle"), EventBusName: aws.String(bus),
		EventPattern: aws.String(`{"source":["` + events.SourceExecutions + `"]}`)}); err != nil {
		t.Fatalf("PutRule: %v", err)
	}
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String("lifecycle"), EventBusName: aws.String(bus),
		Targets: []ebtypes.Target{{Id: aws.String("lifecycle"), Arn: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)])}}}); err != nil {
		t.Fatalf("PutTargets: %v", err)
	}

	chain := linear("quick", map[string]any{"id": "t", "handler": "noop"})
	wantStatus(t, "POST /tasks", d.call(http.MethodPost, "/tasks", map[string]any{"input": "go", "chain": chain}, false), http.StatusOK)

	var got []string
	// A short visibility timeout: a receive whose answer moto lost shows
	// its message again within the tries (see receiveHidden).
	for tries := 0; tries < 10 && len(got) == 0; tries++ {
		out, err := d.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 2})
		if err != nil {
			t.Fatalf("ReceiveMessage: %v", err)
		}
		for _, m := range out.Messages {
			var ev struct {
				Source     string          `json:"source"`
				DetailType string          `json:"detail-type"`
				Detail     events.Envelope `json:"detail"`
			}
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &ev); err != nil {
				t.Fatalf("event %s: %v", aws.ToString(m.Body), err)
			}
			var data core.ExecutionEventData
			if err := json.Unmarshal(ev.Detail.Data, &data); err != nil {
				t.Fatalf("event data %s: %v", ev.Detail.Data, err)
			}
			got = append(got, ev.Source+" "+ev.DetailType+" "+data.ChainID+" "+string(data.Status))
		}
	}
	want := []string{events.SourceExecutions + " " + events.TypeExecutionSucceeded + " quick " + string(core.StatusSucceeded)}
	if !slices.Equal(got, want) {
		t.Errorf("events on the bus: %q, want %q", got, want)
	}

	if deploy(t, map[string]string{"STEPWISE_EVENT_BUS": ""}).env.Bus != nil {
		t.Error("STEPWISE_EVENT_BUS empty, and Env.Bus is not nil")
	}
}
