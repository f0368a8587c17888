// Command lambda is the worker function on AWS Lambda (SAM:
// WorkerFunction): the SQS event source mapping of the work queue hands it
// batches of continuations (ReportBatchItemFailures on), and it runs each
// execution until the invocation's deadline minus STEPWISE_DELIVERY_MARGIN,
// then commits and sends one continuation. A schedule invokes it every
// minute to sweep for executions whose continuation was lost. Built once per cold start; its
// configuration is the environment (docs/aws.md).
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/stepwise-run/stepwise/functions/internal/lambdaenv"
)

func main() {
	env, err := lambdaenv.Load(context.Background(), os.Getenv)
	if err != nil {
		slog.Error("stepwise worker: configuration", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(lambdaenv.Worker(env).HandleEvent)
}
