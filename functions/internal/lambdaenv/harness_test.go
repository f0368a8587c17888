package lambdaenv_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"os"
	"strconv"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/functions/internal/lambdaenv"
	"github.com/stepwise-run/stepwise/infra/awsdynamo"
	"github.com/stepwise-run/stepwise/infra/awsmoto"
)

// The default models; fakellm serves all three.
const (
	embedModel = "nomic-embed-text:latest"
	taskModel  = "llama3.2:1b"
	chatModel  = "qwen2.5:7b"
)

// deployment is what the SAM template creates, on moto: the table and the
// work queue, a fake model server as the Ollama backend, and the Env a
// cold start of a function builds from its environment.
type deployment struct {
	t     testing.TB
	env   *lambdaenv.Env
	llm   *fakellm.Server
	sqs   *sqs.Client
	queue string
	// vars are the variables the Env was loaded from.
	vars map[string]string
	// proxy is the API function's handler, as its main starts it.
	proxy func(context.Context, awsevents.APIGatewayV2HTTPRequest) (awsevents.APIGatewayV2HTTPResponse, error)
}

// deploy creates the resources and loads the Env with the variables of
// extra added to (or replacing) the usual ones.
func deploy(t testing.TB, extra map[string]string) *deployment {
	t.Helper()
	ctx := context.Background()
	moto := awsmoto.Start(t)
	cfg := moto.Config()
	table := "stepwise-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := awsdynamo.New(dynamodb.NewFromConfig(cfg), table).CreateTable(ctx); err != nil {
		t.Fatalf("create table: %v", err)
	}
	client := sqs.NewFromConfig(cfg)
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(table + "-work")})
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	if _, err := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }).
		CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(table + "-blobs")}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	// The key that seals provider keys, in a secret, and the bus of
	// lifecycle events: the API's and the worker's configuration is the
	// template's.
	secret, err := secretsmanager.NewFromConfig(cfg).CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String(table + "/secret-key"), SecretString: aws.String(base64.StdEncoding.EncodeToString(make([]byte, 32)))})
	if err != nil {
		t.Fatalf("create secret: %v", err)
	}
	if _, err := eventbridge.NewFromConfig(cfg).CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(table)}); err != nil {
		t.Fatalf("create bus: %v", err)
	}
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	vars := map[string]string{
		"STEPWISE_TABLE":          table,
		"STEPWISE_QUEUE_URL":      aws.ToString(q.QueueUrl),
		"STEPWISE_BUCKET":         table + "-blobs",
		"STEPWISE_EVENT_BUS":      table,
		"STEPWISE_SECRET_KEY_ARN": aws.ToString(secret.ARN),
		"AWS_ENDPOINT_URL":        moto.Endpoint,
		"OLLAMA_BACKEND_URL":      fake.URL(),
		"EMBED_MODEL":             embedModel,
		"TASK_MODEL":              taskModel,
		"CHAT_MODEL":              chatModel,
		"STEPWISE_LOG_LEVEL":      "error",
	}
	for k, v := range extra {
		vars[k] = v
	}
	env, err := lambdaenv.Load(ctx, func(k string) string { return vars[k] },
		config.WithRegion(awsmoto.Region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("testing", "testing", "")))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return &deployment{t: t, env: env, llm: fake, sqs: client, queue: aws.ToString(q.QueueUrl), vars: vars,
		proxy: httpadapter.NewV2(lambdaenv.API(env)).ProxyWithContext}
}

// lambdaVars is the configuration of the api and worker functions in the
// deployment, with the variables the SAM template sets them (the key in a
// secret, the bus), with extra added.
func (d *deployment) lambdaVars(extra map[string]string) map[string]string {
	vars := maps.Clone(d.vars)
	maps.Copy(vars, extra)
	return vars
}

// response is an API answer as the test reads it.
type response struct {
	status int
	header map[string]string
	body   []byte
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// apigwEvent is the event API Gateway sends for the request: the fixture,
// with the method, path and body replaced.
func apigwEvent(tb testing.TB, method, path string, body []byte, asBase64 bool) awsevents.APIGatewayV2HTTPRequest {
	tb.Helper()
	raw, err := os.ReadFile("testdata/apigw-v2-request.json")
	if err != nil {
		tb.Fatal(err)
	}
	var ev awsevents.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		tb.Fatalf("fixture: %v", err)
	}
	ev.RawPath, ev.RequestContext.HTTP.Path, ev.RequestContext.HTTP.Method = path, path, method
	if body != nil {
		ev.Body = string(body)
		if asBase64 {
			ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
		}
		ev.Headers["content-length"] = strconv.Itoa(len(body))
	}
	return ev
}

// call invokes the API function with the event API Gateway would send for
// the request.
func (d *deployment) call(method, path string, body any, asBase64 bool) response {
	d.t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			d.t.Fatal(err)
		}
	}
	ev := apigwEvent(d.t, method, path, b, asBase64)
	ctx, cancel := context.WithTimeout(context.Background(), 29*time.Second)
	defer cancel()
	out, err := d.proxy(ctx, ev)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	res := response{status: out.StatusCode, header: out.Headers, body: []byte(out.Body)}
	if out.IsBase64Encoded {
		if res.body, err = base64.StdEncoding.DecodeString(out.Body); err != nil {
			d.t.Fatal(err)
		}
	}
	return res
}

// receive takes up to max messages off the work queue as Lambda's event
// source mapping does, and returns them as the SQS event it would send.
func (d *deployment) receive(ctx context.Context, max int32) awsevents.SQSEvent {
	d.t.Helper()
	return d.receiveHidden(ctx, max, 0)
}

// await receives as receive does, with the messages hidden for hide
// seconds (longer than their handling takes), polling for twice that
// until a message comes: a message whose receive the emulator lost shows
// again within the polls. Empty, it is a continuation lost for good.
func (d *deployment) await(ctx context.Context, max, hide int32) awsevents.SQSEvent {
	d.t.Helper()
	ev := d.receiveHidden(ctx, max, hide)
	for tries := int32(1); len(ev.Records) == 0 && tries < 2*hide; tries++ {
		ev = d.receiveHidden(ctx, max, hide)
	}
	return ev
}

// receiveHidden is receive with the messages hidden from other receives
// for the seconds given (0: the queue's visibility timeout, 30 s). A
// receive whose answer is lost (moto_server under load now and then closes
// the connection under it, and the SDK's retry finds the queue empty)
// hides its messages all the same; Lambda's poller sees them again after
// the visibility timeout, and so does a test that receives with a short
// one.
func (d *deployment) receiveHidden(ctx context.Context, max, seconds int32) awsevents.SQSEvent {
	d.t.Helper()
	out, err := d.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(d.queue),
		MaxNumberOfMessages:         max,
		VisibilityTimeout:           seconds,
		WaitTimeSeconds:             1,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	})
	if err != nil {
		d.t.Fatalf("receive: %v", err)
	}
	var ev awsevents.SQSEvent
	for _, m := range out.Messages {
		rec := awsevents.SQSMessage{
			MessageId:         aws.ToString(m.MessageId),
			ReceiptHandle:     aws.ToString(m.ReceiptHandle),
			Body:              aws.ToString(m.Body),
			Md5OfBody:         aws.ToString(m.MD5OfBody),
			Attributes:        m.Attributes,
			MessageAttributes: map[string]awsevents.SQSMessageAttribute{},
			EventSource:       "aws:sqs",
			EventSourceARN:    "arn:aws:sqs:" + awsmoto.Region + ":123456789012:stepwise-work",
			AWSRegion:         awsmoto.Region,
		}
		for k, a := range m.MessageAttributes {
			rec.MessageAttributes[k] = awsevents.SQSMessageAttribute{StringValue: a.StringValue, DataType: aws.ToString(a.DataType)}
		}
		ev.Records = append(ev.Records, rec)
	}
	// Through JSON, as the runtime hands it over.
	b, err := json.Marshal(ev)
	if err != nil {
		d.t.Fatal(err)
	}
	var wire awsevents.SQSEvent
	if err := json.Unmarshal(b, &wire); err != nil {
		d.t.Fatal(err)
	}
	return wire
}

// settle does what the event source mapping does with a batch's answer:
// deletes the messages that succeeded, and makes the failed ones visible
// again at once (the queue's visibility timeout, shortened for the test).
func (d *deployment) settle(ctx context.Context, ev awsevents.SQSEvent, resp awsevents.SQSEventResponse) {
	d.t.Helper()
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	for _, rec := range ev.Records {
		var err error
		if failed[rec.MessageId] {
			_, err = d.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(d.queue), ReceiptHandle: aws.String(rec.ReceiptHandle), VisibilityTimeout: 0})
		} else {
			_, err = d.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(d.queue), ReceiptHandle: aws.String(rec.ReceiptHandle)})
		}
		if err != nil {
			d.t.Fatalf("settle %s: %v", rec.MessageId, err)
		}
	}
}

// wantStatus fails the test unless res has the status.
func wantStatus(t testing.TB, what string, res response, status int) {
	t.Helper()
	if res.status != status {
		t.Fatalf("%s = %d %s, want %d", what, res.status, res.body, status)
	}
}
