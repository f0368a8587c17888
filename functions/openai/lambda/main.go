// Command lambda is the OpenAI-compatible function on AWS Lambda (SAM:
// OpenAIFunction), behind a Function URL with InvokeMode RESPONSE_STREAM:
// the response is streamed as the handler writes it (functions/internal/
// urlstream), which token streaming needs. It runs over DynamoDB and SQS
// like the API function, built once per cold start; its configuration is
// the environment (docs/aws.md). Built with -tags lambda.norpc.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/stepwise-run/stepwise/functions/internal/lambdaenv"
	"github.com/stepwise-run/stepwise/functions/internal/urlstream"
)

func main() {
	env, err := lambdaenv.Load(context.Background(), os.Getenv)
	if err != nil {
		slog.Error("stepwise openai: configuration", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(urlstream.New(lambdaenv.OpenAI(env)))
}
