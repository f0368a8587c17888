// Command lambda is the webhook ingest function on AWS Lambda (SAM:
// IngestFunction), taking HTTP events of payload format 2.0 (an HTTP API
// route or a Function URL in BUFFERED mode) through
// aws-lambda-go-api-proxy.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/stepwise-run/stepwise/functions/internal/lambdaenv"
)

func main() {
	env, err := lambdaenv.Load(context.Background(), os.Getenv)
	if err != nil {
		slog.Error("stepwise ingest: configuration", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(httpadapter.NewV2(lambdaenv.Ingest(env)).ProxyWithContext)
}
