package awsbus

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/stepwise-run/stepwise/core"
)

// garble passes PutEvents on with the detail of the entry of one detail
// type made invalid JSON, so that EventBridge itself rejects that entry.
type garble struct {
	eb         api
	detailType string
}

func (g garble) PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	entries := make([]types.PutEventsRequestEntry, len(in.Entries))
	for i, e := range in.Entries {
		if aws.ToString(e.DetailType) == g.detailType {
			e.Detail = aws.String("{not json")
		}
		entries[i] = e
	}
	return g.eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: entries}, optFns...)
}

// flaky fails entries as EventBridge can: the entry of detail type k fails
// its first fails[k] offers with codes[k] (ThrottlingException when
// unset), and is passed on to the wrapped client after that. It records
// every request's entry count. It stands in for EventBridge's per-entry
// failures, which moto never produces (see the package comment).
type flaky struct {
	eb    api
	fails map[string]int
	codes map[string]string

	mu       sync.Mutex
	offers   map[string]int
	requests []int
}

func newFlaky(eb api, fails map[string]int, codes map[string]string) *flaky {
	return &flaky{eb: eb, fails: fails, codes: codes, offers: map[string]int{}}
}

func (f *flaky) PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	f.mu.Lock()
	f.requests = append(f.requests, len(in.Entries))
	results := make([]types.PutEventsResultEntry, len(in.Entries))
	var pass []types.PutEventsRequestEntry
	var passAt []int
	for i, e := range in.Entries {
		dt := aws.ToString(e.DetailType)
		f.offers[dt]++
		if f.offers[dt] <= f.fails[dt] {
			code := f.codes[dt]
			if code == "" {
				code = "ThrottlingException"
			}
			results[i] = types.PutEventsResultEntry{ErrorCode: aws.String(code), ErrorMessage: aws.String("injected")}
			continue
		}
		pass = append(pass, e)
		passAt = append(passAt, i)
	}
	f.mu.Unlock()
	failed := int32(len(in.Entries) - len(pass))
	if len(pass) > 0 {
		out, err := f.eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: pass}, optFns...)
		if err != nil {
			return nil, err
		}
		for k, r := range out.Entries {
			results[passAt[k]] = r
		}
		failed += out.FailedEntryCount
	}
	return &eventbridge.PutEventsOutput{Entries: results, FailedEntryCount: failed}, nil
}

// offered returns how many times the entry of detail type dt was offered.
func (f *flaky) offered(dt string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.offers[dt]
}

// sink accepts every entry and records the entries of each request, for
// tests that need no emulator.
type sink struct {
	mu       sync.Mutex
	requests [][]types.PutEventsRequestEntry
	err      error
}

func (s *sink) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, in.Entries)
	if s.err != nil {
		return nil, s.err
	}
	return &eventbridge.PutEventsOutput{Entries: make([]types.PutEventsResultEntry, len(in.Entries))}, nil
}

// assertError checks that err has code and that its message contains
// every one of wantIn; a wantCode of "" asks for no error.
func assertError(t *testing.T, err error, wantCode string, wantIn ...string) {
	t.Helper()
	if got := core.ErrorCode(err); got != wantCode {
		t.Fatalf("error %v: code %q, want %q", err, got, wantCode)
	}
	for _, s := range wantIn {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
}
