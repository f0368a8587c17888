package worker_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/events"
	"github.com/stepwise-run/stepwise/functions/worker"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// sqsEvent is an SQS event as Lambda delivers it (the shape of AWS's
// documented example), with the bodies given.
func sqsEvent(t *testing.T, bodies map[string]string) awsevents.SQSEvent {
	t.Helper()
	var records []string
	for id, body := range bodies {
		b, _ := json.Marshal(body)
		records = append(records, `{
		  "messageId": "`+id+`",
		  "receiptHandle": "MessageReceiptHandle",
		  "body": `+string(b)+`,
		  "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1523232000000",
		    "SenderId": "123456789012", "ApproximateFirstReceiveTimestamp": "1523232000001"},
		  "messageAttributes": {},
		  "md5OfBody": "7b270e59b47ff90a553787216d55d91d",
		  "eventSource": "aws:sqs",
		  "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:stepwise-work",
		  "awsRegion": "us-east-1"}`)
	}
	var ev awsevents.SQSEvent
	if err := json.Unmarshal([]byte(`{"Records": [`+strings.Join(records, ",")+`]}`), &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// keptQueue keeps what is sent.
type keptQueue struct {
	mu   sync.Mutex
	msgs []core.QueueMessage
}

func (q *keptQueue) Send(_ context.Context, m core.QueueMessage, _ time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.msgs = append(q.msgs, m)
	return nil
}

func TestHandleSQS(t *testing.T) {
	ctx := context.Background()
	store, queue := mem.New(), &keptQueue{}
	engine := core.NewEngine(core.EngineConfig{Store: store, Queue: queue})
	chain, _, err := core.ParseChain([]byte(`{"id":"c","tasks":[
	  {"id":"a","handler":"noop","transition":{"branches":[{"operator":"default","goto":"b"}]}},
	  {"id":"b","handler":"noop","transition":{"branches":[{"operator":"default","goto":"c"}]}},
	  {"id":"c","handler":"noop"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	start := func() core.QueueMessage {
		ex, err := engine.Start(ctx, core.StartRequest{Chain: chain, Input: core.String("x")})
		if err != nil {
			t.Fatal(err)
		}
		return core.QueueMessage{Kind: core.KindContinue, Tenant: ex.Tenant, ExecutionID: ex.ID, Version: ex.Version}
	}
	body := func(m core.QueueMessage) string {
		b, err := core.EncodeQueueMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	done, budget := start(), start()
	ev := sqsEvent(t, map[string]string{
		"runs-to-the-end": body(done),
		"not-ours":        `{"hello": "world"}`,
	})
	h := worker.New(worker.Config{Engine: engine})
	resp, err := h.HandleSQS(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "not-ours" {
		t.Errorf("failures %+v, want only the foreign message", resp.BatchItemFailures)
	}
	if ex, _ := store.GetExecution(ctx, done.Tenant, done.ExecutionID); ex.Status != core.StatusSucceeded {
		t.Errorf("execution %s, want succeeded", ex.Status)
	}

	t.Run("StepBudgetHandsOn", func(t *testing.T) {
		h := worker.New(worker.Config{Engine: engine, MaxSteps: 1})
		if resp, err := h.HandleSQS(ctx, sqsEvent(t, map[string]string{"m": body(budget)})); err != nil || len(resp.BatchItemFailures) != 0 {
			t.Fatalf("HandleSQS = %+v, %v", resp, err)
		}
		if len(queue.msgs) != 1 || queue.msgs[0].ExecutionID != budget.ExecutionID {
			t.Errorf("sent %+v, want one continuation", queue.msgs)
		}
	})
	t.Run("NoTimeLeftFailsTheRecord", func(t *testing.T) {
		late := start()
		dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		resp, err := h.HandleSQS(dctx, sqsEvent(t, map[string]string{"late": body(late)}))
		if err != nil || len(resp.BatchItemFailures) != 1 {
			t.Errorf("HandleSQS = %+v, %v; want the record failed for the next invocation", resp, err)
		}
		if ex, _ := store.GetExecution(ctx, late.Tenant, late.ExecutionID); ex.StepCount != 0 {
			t.Errorf("%d steps ran without time for them", ex.StepCount)
		}
	})
}

// countingSweeper records the sweeps asked for, by tenant; a recovery
// sends one more.
type countingSweeper struct {
	calls, recovers int
	tenants         []string
}

func (s *countingSweeper) Recover(context.Context, string, func(string) bool) (int, error) {
	s.recovers++
	return 1, nil
}

func (s *countingSweeper) Sweep(_ context.Context, tenant string, _ time.Duration) (int, error) {
	s.calls++
	s.tenants = append(s.tenants, tenant)
	return 2, nil
}

func TestHandleEvent(t *testing.T) {
	ctx := context.Background()
	engine := core.NewEngine(core.EngineConfig{Store: mem.New(), Queue: &keptQueue{}})
	sweeper := &countingSweeper{}
	h := worker.New(worker.Config{Engine: engine, Sweeper: sweeper})
	t.Run("ScheduledEventSweeps", func(t *testing.T) {
		// The shape EventBridge Scheduler sends a Lambda target.
		ev := `{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event",
		  "source":"aws.events","account":"123456789012","time":"2026-11-21T08:00:00Z","region":"us-east-1",
		  "resources":["arn:aws:events:us-east-1:123456789012:rule/stepwise-sweep"],"detail":{}}`
		out, err := h.HandleEvent(ctx, json.RawMessage(ev))
		if err != nil || sweeper.calls != 1 || sweeper.recovers != 1 || out.(map[string]int)["sent"] != 3 {
			t.Errorf("HandleEvent = %v, %v after %d sweeps and %d recoveries; want one of each reporting 3 sent", out, err, sweeper.calls, sweeper.recovers)
		}
	})
	t.Run("ScheduledEventSweepsEveryTenant", func(t *testing.T) {
		sw := &countingSweeper{}
		tenants := func(context.Context) ([]string, error) { return []string{"acme", core.DefaultTenant, "globex"}, nil }
		h := worker.New(worker.Config{Engine: engine, Sweeper: sw, Tenants: tenants})
		out, err := h.HandleEvent(ctx, json.RawMessage(`{"detail-type":"Scheduled Event","source":"aws.events","detail":{}}`))
		if err != nil || out.(map[string]int)["sent"] != 9 || !slices.Equal(sw.tenants, []string{core.DefaultTenant, "acme", "globex"}) {
			t.Errorf("HandleEvent = %v, %v; swept %q, want default, acme and globex once each", out, err, sw.tenants)
		}
	})
	t.Run("SQSBatch", func(t *testing.T) {
		raw, _ := json.Marshal(sqsEvent(t, map[string]string{"bad": `{"hello":"world"}`}))
		out, err := h.HandleEvent(ctx, raw)
		resp, ok := out.(awsevents.SQSEventResponse)
		if err != nil || !ok || len(resp.BatchItemFailures) != 1 {
			t.Errorf("HandleEvent = %#v, %v; want the batch handled with the foreign record failed", out, err)
		}
	})
	t.Run("AnEnvelopeRunsItsTriggers", func(t *testing.T) {
		got := &recordingEvents{}
		h := worker.New(worker.Config{Engine: engine, Events: got})
		body := `{"version":"0","id":"e1","detail-type":"push","source":"github","detail":{"id":"ev-1","tenant":"acme","source":"github","type":"push","time":"2026-12-08T00:00:00Z","data":{}}}`
		msg := `{"kind":"event","tenant":"acme","event_id":"ev-2"}`
		resp, err := h.HandleSQS(ctx, sqsEvent(t, map[string]string{"bridge": body, "queued": msg}))
		if err != nil || len(resp.BatchItemFailures) != 0 || len(got.handled) != 2 || got.handled[0] != "acme/ev-1" && got.handled[1] != "acme/ev-1" {
			t.Errorf("HandleSQS = %+v, %v; handled %v", resp, err, got.handled)
		}
	})
	t.Run("DomainEventIsAcknowledged", func(t *testing.T) {
		body := `{"version":"0","id":"e1","detail-type":"execution.finished","source":"stepwise","detail":{"id":"x"}}`
		resp, err := h.HandleSQS(ctx, sqsEvent(t, map[string]string{"event": body}))
		if err != nil || len(resp.BatchItemFailures) != 0 {
			t.Errorf("HandleSQS = %+v, %v; want the domain event acknowledged, not retried into the DLQ", resp, err)
		}
	})
	t.Run("UnknownEvent", func(t *testing.T) {
		if _, err := h.HandleEvent(ctx, json.RawMessage(`{"something":"else"}`)); core.ErrorCode(err) != core.EINVALID {
			t.Errorf("err = %v, want EINVALID", err)
		}
	})
}

// recordingEvents is an EventHandler that records what it was asked to
// handle.
type recordingEvents struct{ handled []string }

func (r *recordingEvents) Handle(_ context.Context, ev events.Envelope) error {
	r.handled = append(r.handled, ev.Tenant+"/"+ev.ID)
	return nil
}

func (r *recordingEvents) HandleID(_ context.Context, tenant, id string) error {
	r.handled = append(r.handled, tenant+"/"+id)
	return nil
}
