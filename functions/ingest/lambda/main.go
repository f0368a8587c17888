// Command lambda is the webhook ingest function on AWS Lambda (SAM:
// IngestFunction), taking HTTP events of payload format 2.0 (an HTTP API
// route or a Function URL in BUFFERED mode) through
// aws-lambda-go-api-proxy.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/stepwise-run/stepwise/functions/ingest"
)

func main() {
	lambda.Start(httpadapter.NewV2(ingest.New()).ProxyWithContext)
}
