package awsmoto_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stepwise-run/stepwise/infra/awsmoto"
)

func TestStartServesTheAWSProtocol(t *testing.T) {
	s := awsmoto.Start(t)
	client := sqs.NewFromConfig(s.Config())
	out, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: new(string)})
	if err == nil && out.QueueUrl != nil {
		t.Fatal("an empty queue name was accepted; this is not talking to the emulator")
	}
	name := "probe"
	if _, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: &name}); err != nil {
		t.Fatalf("CreateQueue on the emulator: %v", err)
	}
	if err := s.Reset(context.Background()); err != nil {
		t.Fatalf("Reset: %v", err)
	}
}
