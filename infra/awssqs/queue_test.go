package awssqs

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/coretest"
)

// receiveWait bounds a test's wait for a message that should come.
const receiveWait = 30 * time.Second

func TestQueueSuite(t *testing.T) {
	client := newClient(t)
	coretest.QueueSuite(t, func(t *testing.T) coretest.QueueHarness {
		url := newQueueURL(t, client)
		r := receiver{t: t, client: client, url: url}
		return coretest.QueueHarness{
			Queue: New(client, url),
			Receive: func(ctx context.Context) (core.Delivery, func(error), error) {
				got, settle, err := r.receive(ctx)
				return got.delivery, settle, err
			},
		}
	})
}

func TestSend(t *testing.T) {
	client := newClient(t)
	ctx := context.Background()

	t.Run("WritesRoutingFieldsAsAttributes", func(t *testing.T) {
		url := newQueueURL(t, client)
		m := core.QueueMessage{ID: "m1", Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-9", Version: 2}
		if err := New(client, url).Send(ctx, m, 0); err != nil {
			t.Fatal(err)
		}
		got := receiver{t: t, client: client, url: url}.mustReceive()
		want := map[string]string{AttrKind: "continue", AttrTenant: "acme", AttrExecution: "ex-9"}
		for name, v := range want {
			if got.attributes[name] != v {
				t.Errorf("attribute %s = %q, want %q (all: %v)", name, got.attributes[name], v, got.attributes)
			}
		}
	})

	t.Run("SubSecondDelayIsRoundedUp", func(t *testing.T) {
		// Truncated, a 300 ms delay would be DelaySeconds 0 and the
		// delayed message would come first; rounded up, it is held back
		// behind one sent after it.
		url := newQueueURL(t, client)
		q := New(client, url)
		delayed := core.QueueMessage{ID: "delayed", Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-1"}
		now := core.QueueMessage{ID: "now", Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-2"}
		if err := q.Send(ctx, delayed, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := q.Send(ctx, now, 0); err != nil {
			t.Fatal(err)
		}
		r := receiver{t: t, client: client, url: url}
		if got := r.mustReceive().delivery.Message.ID; got != now.ID {
			t.Errorf("first delivery = %q, want %q: the sub-second delay was not rounded up", got, now.ID)
		}
		if got := r.mustReceive().delivery.Message.ID; got != delayed.ID {
			t.Errorf("second delivery = %q, want %q", got, delayed.ID)
		}
	})

	t.Run("DelayLongerThanSQSAllowsIsCapped", func(t *testing.T) {
		// SQS (and moto) reject DelaySeconds above 900; Send must cap,
		// not fail, so an hour's delay is accepted.
		url := newQueueURL(t, client)
		m := core.QueueMessage{ID: "later", Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-1"}
		if err := New(client, url).Send(ctx, m, time.Hour); err != nil {
			t.Fatalf("Send with a 1 h delay: %v", err)
		}
	})

	errTests := []struct {
		name     string
		url      func(t *testing.T) string
		msg      core.QueueMessage
		ctx      func() context.Context
		wantCode string
		wantText string
	}{
		{
			name:     "MissingQueueIsUnavailableAndNamed",
			url:      func(t *testing.T) string { return newQueueURL(t, client) + "-gone" },
			msg:      core.QueueMessage{Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-1"},
			wantCode: core.EUNAVAILABLE,
			wantText: "-gone does not exist",
		},
		{
			name:     "MissingKindIsInvalid",
			url:      func(t *testing.T) string { return newQueueURL(t, client) },
			msg:      core.QueueMessage{Tenant: "acme", ExecutionID: "ex-1"},
			wantCode: core.EINVALID,
			wantText: "kind: required",
		},
		{
			name:     "MissingTenantIsInvalid",
			url:      func(t *testing.T) string { return newQueueURL(t, client) },
			msg:      core.QueueMessage{Kind: core.KindContinue, ExecutionID: "ex-1"},
			wantCode: core.EINVALID,
			wantText: "tenant: required",
		},
		{
			name:     "ContinuationWithoutExecutionIsInvalid",
			url:      func(t *testing.T) string { return newQueueURL(t, client) },
			msg:      core.QueueMessage{Kind: core.KindContinue, Tenant: "acme"},
			wantCode: core.EINVALID,
			wantText: "execution_id: required",
		},
		{
			name: "ExpiredContextIsTimeout",
			url:  func(t *testing.T) string { return newQueueURL(t, client) },
			msg:  core.QueueMessage{Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-1"},
			ctx: func() context.Context {
				c, cancel := context.WithDeadline(ctx, time.Unix(0, 0))
				cancel()
				return c
			},
			wantCode: core.ETIMEOUT,
		},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			sctx := ctx
			if tt.ctx != nil {
				sctx = tt.ctx()
			}
			err := New(client, tt.url(t)).Send(sctx, tt.msg, 0)
			if got := core.ErrorCode(err); got != tt.wantCode {
				t.Fatalf("Send error = %v (code %q), want code %q", err, got, tt.wantCode)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Send error = %q, want it to mention %q", err, tt.wantText)
			}
		})
	}

	t.Run("RejectedRequestIsInvalid", func(t *testing.T) {
		// moto accepts any body, but rejects DelaySeconds above 900 as
		// SQS does: a client that breaks the request shows how a
		// rejection SQS sends back is mapped.
		url := newQueueURL(t, client)
		q := newQueue(tamper{sqs: client, delay: 1800}, url)
		err := q.Send(ctx, core.QueueMessage{Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-1"}, 0)
		if got := core.ErrorCode(err); got != core.EINVALID {
			t.Errorf("Send error = %v (code %q), want code %q", err, got, core.EINVALID)
		}
	})

	t.Run("UnreachableEndpointIsUnavailable", func(t *testing.T) {
		cfg := client.Options()
		cfg.BaseEndpoint = aws.String("http://127.0.0.1:1")
		cfg.RetryMaxAttempts = 1
		dead := sqs.New(cfg)
		err := New(dead, "http://127.0.0.1:1/000000000000/q").Send(ctx,
			core.QueueMessage{Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-1"}, 0)
		if got := core.ErrorCode(err); got != core.EUNAVAILABLE {
			t.Errorf("Send error = %v (code %q), want code %q", err, got, core.EUNAVAILABLE)
		}
		if errors.Is(err, context.Canceled) {
			t.Errorf("Send error = %v, should not be a cancellation", err)
		}
	})
}
