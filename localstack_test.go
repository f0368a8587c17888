package stepwise_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/coretest"
	"github.com/stepwise-run/stepwise/core/seal"
	"github.com/stepwise-run/stepwise/infra/awsdynamo"
	"github.com/stepwise-run/stepwise/infra/awsmoto"
	"github.com/stepwise-run/stepwise/infra/awss3"
	"github.com/stepwise-run/stepwise/infra/awssqs"
)

// localstackInit is the LocalStack init script; it takes its endpoint
// from AWS_ENDPOINT_URL, so the test runs it against moto.
const localstackInit = "localstack/init/ready.d/stepwise.py"

// lostReceiveShows is the visibility timeout of the test's receives: under
// load moto_server now and then closes the connection under a
// ReceiveMessage answer, and the message it carried shows again only
// after this (the work queue's own is 1800 s).
const lostReceiveShows = 2

// TestLocalStackInitScript runs the LocalStack init script twice against
// the AWS emulator (the second run proves it idempotent) and checks that
// the adapters work on what it created, as template.yaml would create it.
func TestLocalStackInitScript(t *testing.T) {
	moto := awsmoto.Start(t)
	if out, err := exec.Command("python3", "-c", "import boto3").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 cannot import boto3, and CI must test the LocalStack init script: %v\n%s", err, out)
		}
		t.Skipf("python3 cannot import boto3 (%v); the LocalStack init script test needs it", err)
	}
	env := append(os.Environ(),
		"AWS_ENDPOINT_URL="+moto.Endpoint,
		"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing",
		"AWS_DEFAULT_REGION="+awsmoto.Region, "STEPWISE_STACK=stepwise")
	ctx := context.Background()
	cfg := moto.Config()
	secrets := secretsmanager.NewFromConfig(cfg)
	// keys holds the secret key after each run: the second must keep it.
	var keys []string
	for run := 1; run <= 2; run++ {
		cmd := exec.Command("python3", localstackInit)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("run %d of %s: %v\n%s", run, localstackInit, err, out)
		}
		out, err := secrets.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("stepwise/secret-key")})
		if err != nil {
			t.Fatalf("run %d made no secret key: %v", run, err)
		}
		keys = append(keys, aws.ToString(out.SecretString))
	}
	db, queues := dynamodb.NewFromConfig(cfg), sqs.NewFromConfig(cfg)
	workURL, dlqURL := queueURL(t, queues, "stepwise-work"), queueURL(t, queues, "stepwise-work-dlq")

	t.Run("TableMatchesCreateTable", func(t *testing.T) {
		if err := awsdynamo.New(db, "reference").CreateTable(ctx); err != nil {
			t.Fatalf("CreateTable: %v", err)
		}
		got, want := tableSchema(t, db, "stepwise"), tableSchema(t, db, "reference")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("the init script's table differs from CreateTable's:\n got %s\nwant %s", got, want)
		}
	})

	t.Run("StoreRoundTrips", func(t *testing.T) {
		store := awsdynamo.New(db, "stepwise")
		r := coretest.NewRecord("backend", "b1", time.Unix(1700000000, 0).UTC(), "name=local")
		if err := store.CreateRecord(ctx, "default", r); err != nil {
			t.Fatalf("CreateRecord: %v", err)
		}
		got, err := store.FindRecord(ctx, "default", "backend", "name=local")
		if err != nil {
			t.Fatalf("FindRecord: %v", err)
		}
		if got.ID != "b1" || got.Version != 1 || string(got.Body) != string(r.Body) {
			t.Errorf("FindRecord = %+v, want b1 at version 1 with body %s", got, r.Body)
		}
		page, err := store.ListRecords(ctx, "default", "backend", core.ListQuery{})
		if err != nil {
			t.Fatalf("ListRecords: %v", err)
		}
		if len(page.Records) != 1 || page.Records[0].ID != "b1" {
			t.Errorf("ListRecords = %+v, want b1 alone", page.Records)
		}
	})

	t.Run("QueueSendsAndReceives", func(t *testing.T) {
		sent := core.QueueMessage{ID: "m1", Kind: core.KindContinue, Tenant: "default", ExecutionID: "e1", Version: 3}
		if err := awssqs.New(queues, workURL).Send(ctx, sent, 0); err != nil {
			t.Fatalf("Send: %v", err)
		}
		out, err := queues.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(workURL), MaxNumberOfMessages: 1, WaitTimeSeconds: 10, VisibilityTimeout: lostReceiveShows})
		if err != nil || len(out.Messages) != 1 {
			t.Fatalf("ReceiveMessage = %d messages, %v; want the one sent", len(out.Messages), err)
		}
		var got core.QueueMessage
		if err := json.Unmarshal([]byte(aws.ToString(out.Messages[0].Body)), &got); err != nil || got != sent {
			t.Errorf("received %+v (%v), want %+v", got, err, sent)
		}
	})

	t.Run("WorkQueueRedrivesToDLQ", func(t *testing.T) {
		work := queueAttributes(t, queues, workURL)
		dlqARN := queueAttributes(t, queues, dlqURL)[string(sqstypes.QueueAttributeNameQueueArn)]
		var redrive struct {
			Target   string          `json:"deadLetterTargetArn"`
			MaxCount json.RawMessage `json:"maxReceiveCount"`
		}
		if err := json.Unmarshal([]byte(work[string(sqstypes.QueueAttributeNameRedrivePolicy)]), &redrive); err != nil {
			t.Fatalf("RedrivePolicy %q: %v", work[string(sqstypes.QueueAttributeNameRedrivePolicy)], err)
		}
		if redrive.Target != dlqARN || strings.Trim(string(redrive.MaxCount), `"`) != "5" {
			t.Errorf("RedrivePolicy = %+v, want %s after 5 receives", redrive, dlqARN)
		}
		if v := work[string(sqstypes.QueueAttributeNameVisibilityTimeout)]; v != "1800" {
			t.Errorf("VisibilityTimeout = %s, want 1800 (6x the worker's 300 s)", v)
		}
	})

	t.Run("BlobBucketStoresLargeOutputs", func(t *testing.T) {
		blobs := awss3.New(s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }), "stepwise-blobs")
		data := []byte("a step output too large for a table item")
		if err := blobs.Put(ctx, "default", awss3.Hash(data), data); err != nil {
			t.Fatalf("Put into the bucket the script made: %v", err)
		}
		got, err := blobs.Get(ctx, "default", awss3.Hash(data))
		if err != nil || string(got) != string(data) {
			t.Errorf("Get = %q, %v", got, err)
		}
	})
	t.Run("SecretKeyIsMadeOnce", func(t *testing.T) {
		if _, err := seal.ParseKey(keys[0]); err != nil {
			t.Errorf("the secret holds no key STEPWISE_SECRET_KEY_ARN takes: %v", err)
		}
		if keys[0] != keys[1] {
			t.Error("the second run replaced the key: provider keys sealed with the first would no longer open")
		}
	})

	t.Run("RuleDeliversEveryEvent", func(t *testing.T) {
		// Ingested events, functions' events and lifecycle events all
		// reach the worker, which runs their triggers.
		bus := eventbridge.NewFromConfig(cfg)
		var entries []ebtypes.PutEventsRequestEntry
		for _, source := range []string{"stepwise.executions", "stepwise.ingest", "stepwise"} {
			entries = append(entries, ebtypes.PutEventsRequestEntry{EventBusName: aws.String("stepwise"),
				Source: aws.String(source), DetailType: aws.String("test"), Detail: aws.String(`{"from":"` + source + `"}`)})
		}
		out, err := bus.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: entries})
		if err != nil || out.FailedEntryCount != 0 {
			t.Fatalf("PutEvents: %v (%d failed)", err, out.FailedEntryCount)
		}
		var got []string
		for tries := 0; tries < 5; tries++ {
			msgs, err := queues.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(workURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: lostReceiveShows})
			if err != nil {
				t.Fatalf("ReceiveMessage: %v", err)
			}
			if len(msgs.Messages) == 0 && len(got) > 0 {
				break // moto delivers as PutEvents returns: nothing else comes
			}
			for _, m := range msgs.Messages {
				var ev struct {
					Source string `json:"source"`
				}
				if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &ev); err != nil {
					t.Fatalf("message %s: %v", aws.ToString(m.Body), err)
				}
				got = append(got, ev.Source)
				if _, err := queues.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(workURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
					t.Fatalf("DeleteMessage: %v", err)
				}
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, []string{"stepwise", "stepwise.executions", "stepwise.ingest"}) {
			t.Errorf("the work queue received events of %q, want all three", got)
		}
	})

	t.Run("RuleTargetsWorkQueue", func(t *testing.T) {
		out, err := eventbridge.NewFromConfig(cfg).ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{
			Rule: aws.String("stepwise-events-to-work"), EventBusName: aws.String("stepwise")})
		if err != nil {
			t.Fatalf("ListTargetsByRule: %v", err)
		}
		workARN := queueAttributes(t, queues, workURL)[string(sqstypes.QueueAttributeNameQueueArn)]
		if len(out.Targets) != 1 || aws.ToString(out.Targets[0].Arn) != workARN {
			t.Errorf("the rule's targets are %+v, want the work queue %s alone", out.Targets, workARN)
		}
		rule, err := eventbridge.NewFromConfig(cfg).DescribeRule(ctx, &eventbridge.DescribeRuleInput{
			Name: aws.String("stepwise-events-to-work"), EventBusName: aws.String("stepwise")})
		if err != nil {
			t.Fatalf("DescribeRule: %v", err)
		}
		var pattern any
		if err := json.Unmarshal([]byte(aws.ToString(rule.EventPattern)), &pattern); err != nil {
			t.Fatalf("EventPattern %q: %v", aws.ToString(rule.EventPattern), err)
		}
		want := lookup(loadTemplate(t, "template.yaml"), "Resources", "EventsToWorkRule", "Properties", "EventPattern")
		if !equalJSON(pattern, want) {
			t.Errorf("the rule's pattern is %s, template.yaml's %v", aws.ToString(rule.EventPattern), want)
		}
	})
}

// queueURL returns the URL of the queue called name, failing t if there
// is none.
func queueURL(t *testing.T, client *sqs.Client, name string) string {
	t.Helper()
	out, err := client.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("GetQueueUrl %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}

// queueAttributes returns every attribute of the queue at url.
func queueAttributes(t *testing.T, client *sqs.Client, url string) map[string]string {
	t.Helper()
	out, err := client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
	if err != nil {
		t.Fatalf("GetQueueAttributes %s: %v", url, err)
	}
	return out.Attributes
}

// tableSchema describes a table's keys, attributes, index and billing
// mode, in an order-independent form that can be compared.
func tableSchema(t *testing.T, client *dynamodb.Client, table string) string {
	t.Helper()
	out, err := client.DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatalf("DescribeTable %s: %v", table, err)
	}
	keys := func(ks []dbtypes.KeySchemaElement) string {
		var parts []string
		for _, k := range ks {
			parts = append(parts, aws.ToString(k.AttributeName)+":"+string(k.KeyType))
		}
		return strings.Join(parts, ",")
	}
	var parts []string
	for _, a := range out.Table.AttributeDefinitions {
		parts = append(parts, "attr "+aws.ToString(a.AttributeName)+":"+string(a.AttributeType))
	}
	for _, g := range out.Table.GlobalSecondaryIndexes {
		parts = append(parts, "gsi "+aws.ToString(g.IndexName)+" "+keys(g.KeySchema)+" "+string(g.Projection.ProjectionType))
	}
	slices.Sort(parts)
	billing := "PROVISIONED"
	if out.Table.BillingModeSummary != nil {
		billing = string(out.Table.BillingModeSummary.BillingMode)
	}
	return "key " + keys(out.Table.KeySchema) + "; billing " + billing + "; " + strings.Join(parts, "; ")
}
