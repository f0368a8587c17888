// Command lambda is the API function on AWS Lambda (SAM: ApiFunction),
// behind an API Gateway HTTP API (payload format 2.0): the same
// http.Handler as `stepwise serve`, over DynamoDB and SQS, built once per
// cold start. Its configuration is the environment (docs/aws.md).
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
		// Failing the init phase shows the error in the function's log and
		// to the caller, instead of a function that answers every request
		// with it.
		slog.Error("stepwise api: configuration", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(httpadapter.NewV2(lambdaenv.API(env)).ProxyWithContext)
}
