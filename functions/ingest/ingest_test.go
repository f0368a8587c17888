package ingest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/stepwise-run/stepwise/functions/ingest"
)

// TestNotImplementedYet invokes the handler as the Lambda entry point does,
// with an HTTP event of payload format 2.0.
func TestNotImplementedYet(t *testing.T) {
	ev := awsevents.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: "$default", RawPath: "/ingest/github",
		Headers: map[string]string{"content-type": "application/json"},
		Body:    `{"action":"opened"}`,
		RequestContext: awsevents.APIGatewayV2HTTPRequestContext{
			HTTP: awsevents.APIGatewayV2HTTPRequestContextHTTPDescription{Method: http.MethodPost, Path: "/ingest/github", SourceIP: "203.0.113.7"},
		},
	}
	resp, err := httpadapter.NewV2(ingest.New()).ProxyWithContext(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("status %d, want 501", resp.StatusCode)
	}
	var env struct {
		Error struct{ Message, Type, Code string }
	}
	if err := json.Unmarshal([]byte(resp.Body), &env); err != nil || env.Error.Code != "not_implemented" || env.Error.Type != "api_error" {
		t.Errorf("body %s (%v), want the OpenAI error envelope", resp.Body, err)
	}
}
