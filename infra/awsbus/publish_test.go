package awsbus

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/smithy-go"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/events"
	"github.com/stepwise-run/stepwise/infra/awsmoto"
)

func TestPublishPartialFailures(t *testing.T) {
	eb := eventbridge.NewFromConfig(awsmoto.Start(t).Config())
	bus := "stepwise-partial"
	if _, err := eb.CreateEventBus(context.Background(), &eventbridge.CreateEventBusInput{Name: aws.String(bus)}); err != nil {
		t.Fatalf("CreateEventBus: %v", err)
	}
	tests := []struct {
		name       string
		fails      map[string]int
		codes      map[string]string
		wantCode   string
		wantIn     []string
		wantOffers map[string]int
	}{
		{name: "throttled entry recovers on resend", fails: map[string]int{"Test1": 2},
			wantOffers: map[string]int{"Test0": 1, "Test1": 3, "Test2": 1}},
		{name: "internal failure that persists", fails: map[string]int{"Test2": 99}, codes: map[string]string{"Test2": "InternalFailure"},
			wantCode: core.EUNAVAILABLE, wantIn: []string{"event 2 (Test2): InternalFailure"},
			wantOffers: map[string]int{"Test0": 1, "Test2": attempts}},
		{name: "malformed entry is not resent", fails: map[string]int{"Test0": 99, "Test1": 1},
			codes:    map[string]string{"Test0": "MalformedDetail"},
			wantCode: core.EINVALID, wantIn: []string{"event 0 (Test0): MalformedDetail"},
			wantOffers: map[string]int{"Test0": 1, "Test1": 2}},
		{name: "malformed wins over throttled", fails: map[string]int{"Test0": 99, "Test1": 99},
			codes:    map[string]string{"Test0": "InvalidArgument"},
			wantCode: core.EINVALID, wantIn: []string{"event 0 (Test0): InvalidArgument", "event 1 (Test1): ThrottlingException"},
			wantOffers: map[string]int{"Test0": 1, "Test1": attempts}},
		{name: "access denied entry", fails: map[string]int{"Test1": 99}, codes: map[string]string{"Test1": "AccessDeniedException"},
			wantCode: core.EINTERNAL, wantIn: []string{"event 1 (Test1): AccessDeniedException"},
			wantOffers: map[string]int{"Test1": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFlaky(eb, tt.fails, tt.codes)
			b := newBus(f, bus)
			b.retryWait = 0
			err := b.Publish(context.Background(), testEvents(3))
			assertError(t, err, tt.wantCode, tt.wantIn...)
			if tt.wantCode != "" {
				var pe *core.PublishError
				if !errors.As(err, &pe) {
					t.Fatalf("error %v: no *PublishError in the chain", err)
				}
				if len(pe.Failed) != len(tt.wantIn) {
					t.Errorf("failed %v, want %d failures", pe.Failed, len(tt.wantIn))
				}
			}
			for dt, n := range tt.wantOffers {
				if got := f.offered(dt); got != n {
					t.Errorf("%s offered %d times, want %d", dt, got, n)
				}
			}
		})
	}
}

func TestPublishLimits(t *testing.T) {
	sized := func(id string, n int) events.Envelope {
		ev := testEvents(1)[0]
		ev.ID, ev.Type = id, "Big"
		ev.Data = json.RawMessage(`{"s":"` + strings.Repeat("x", n) + `"}`)
		return ev
	}
	big := sized("big", 100*1024)
	largest := sized("largest", events.MaxSize-400)
	tests := []struct {
		name         string
		events       []events.Envelope
		wantRequests []int
	}{
		{name: "none", events: nil},
		{name: "ten per request", events: testEvents(25), wantRequests: []int{10, 10, 5}},
		{name: "split by size", events: []events.Envelope{big, big, big, big, big}, wantRequests: []int{2, 2, 1}},
		{name: "the largest valid event goes alone", events: []events.Envelope{largest, largest}, wantRequests: []int{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sink{}
			if err := newBus(s, "stepwise").Publish(context.Background(), tt.events); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			var got []int
			for _, r := range s.requests {
				got = append(got, len(r))
				size := 0
				for _, e := range r {
					size += entrySize(e)
				}
				if size > MaxRequestSize {
					t.Errorf("a request of %d bytes, over %d", size, MaxRequestSize)
				}
			}
			if !slices.Equal(got, tt.wantRequests) {
				t.Errorf("request sizes %v, want %v", got, tt.wantRequests)
			}
		})
	}
}

func TestPublishEntryShape(t *testing.T) {
	s := &sink{}
	ev := testEvents(1)[0]
	ev.Subject = "ex-1"
	if err := newBus(s, "the-bus").Publish(context.Background(), []events.Envelope{ev}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	e := s.requests[0][0]
	var detail events.Envelope
	if err := json.Unmarshal([]byte(aws.ToString(e.Detail)), &detail); err != nil {
		t.Fatalf("detail %s: %v", aws.ToString(e.Detail), err)
	}
	if aws.ToString(e.EventBusName) != "the-bus" || aws.ToString(e.Source) != ev.Source || aws.ToString(e.DetailType) != ev.Type ||
		!aws.ToTime(e.Time).Equal(ev.Time) || detail.ID != ev.ID || detail.Tenant != ev.Tenant || detail.Subject != ev.Subject {
		t.Errorf("entry %+v with detail %+v, want bus the-bus and the envelope %+v", e, detail, ev)
	}
}

func TestPublishConfiguration(t *testing.T) {
	s := &sink{}
	err := newBus(s, "").Publish(context.Background(), testEvents(1))
	assertError(t, err, core.EINVALID, "bus: empty")
	if len(s.requests) != 0 {
		t.Errorf("%d requests sent, want none", len(s.requests))
	}
}

func TestPublishRequestFailure(t *testing.T) {
	s := &sink{err: &smithy.GenericAPIError{Code: "ThrottlingException", Message: "slow down"}}
	err := newBus(s, "stepwise").Publish(context.Background(), testEvents(12))
	assertError(t, err, core.EUNAVAILABLE, "event 0 (Test0): NotSent", "event 11 (Test11): NotSent: an earlier request failed")
	if len(s.requests) != 1 {
		t.Errorf("%d requests sent after the first failed, want 1", len(s.requests))
	}
}

func TestPublishContextEnded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := newFlaky(&sink{}, map[string]int{"Test0": 99}, nil)
	err := newBus(f, "stepwise").Publish(ctx, testEvents(1))
	assertError(t, err, core.ETIMEOUT, "event 0 (Test0): NotSent: the context ended")
}

func TestMapError(t *testing.T) {
	api := func(code string, fault smithy.ErrorFault) error {
		return &smithy.GenericAPIError{Code: code, Message: "m", Fault: fault}
	}
	tests := []struct {
		name     string
		err      error
		wantCode string
		wantIn   string
	}{
		{name: "deadline", err: context.DeadlineExceeded, wantCode: core.ETIMEOUT},
		{name: "cancelled", err: context.Canceled, wantCode: core.ETIMEOUT},
		{name: "missing bus", err: api("ResourceNotFoundException", smithy.FaultClient), wantCode: core.EUNAVAILABLE, wantIn: "bus b does not exist"},
		{name: "throttling", err: api("ThrottlingException", smithy.FaultClient), wantCode: core.EUNAVAILABLE},
		{name: "internal", err: api("InternalException", smithy.FaultServer), wantCode: core.EUNAVAILABLE},
		{name: "unknown server fault", err: api("Whatever", smithy.FaultServer), wantCode: core.EUNAVAILABLE},
		{name: "validation", err: api("ValidationException", smithy.FaultClient), wantCode: core.EINVALID},
		{name: "access denied", err: api("AccessDeniedException", smithy.FaultClient), wantCode: core.EINTERNAL},
		{name: "plain error", err: errors.New("boom"), wantCode: core.EINTERNAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mapError(tt.err, "b", "PutEvents")
			assertError(t, err, tt.wantCode, "PutEvents", tt.wantIn)
			if !errors.Is(err, tt.err) {
				t.Errorf("error %v does not wrap %v", err, tt.err)
			}
		})
	}
}
