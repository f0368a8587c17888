// Command lambda is the OpenAI-compatible function on AWS Lambda (SAM:
// OpenAIFunction), behind a Function URL with InvokeMode RESPONSE_STREAM:
// the response is streamed as the handler writes it (functions/internal/
// urlstream), which token streaming needs. Built with -tags lambda.norpc.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/stepwise-run/stepwise/functions/internal/urlstream"
	"github.com/stepwise-run/stepwise/functions/openai"
)

func main() {
	lambda.Start(urlstream.New(openai.New()))
}
