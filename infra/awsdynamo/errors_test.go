package awsdynamo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/coretest"
)

func canceledBy(codes ...string) error {
	e := &types.TransactionCanceledException{}
	for _, c := range codes {
		e.CancellationReasons = append(e.CancellationReasons, types.CancellationReason{Code: aws.String(c)})
	}
	return e
}

// asOperation wraps err as the SDK returns it from a call.
func asOperation(err error) error {
	return &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "PutItem", Err: err}
}

func TestErrorMapping(t *testing.T) {
	s := New(nil, "the-table")
	tests := []struct {
		name string
		err  error
		code string
		// says are phrases the message must hold.
		says []string
	}{
		{"ConditionalCheckFailed", &types.ConditionalCheckFailedException{}, core.ECONFLICT, nil},
		{"TransactionCanceledByCondition", canceledBy("None", "ConditionalCheckFailed"), core.ECONFLICT, nil},
		{"TransactionCanceledByConflict", canceledBy("TransactionConflict"), core.ECONFLICT, nil},
		{"TransactionConflict", &types.TransactionConflictException{}, core.ECONFLICT, nil},
		{"TransactionCanceledByThrottling", canceledBy("None", "ThrottlingError"), core.EUNAVAILABLE, nil},
		{"TransactionCanceledByValidation", canceledBy("ValidationError"), core.EINVALID, nil},
		{"TransactionCanceledOtherwise", canceledBy("None", "Mystery"), core.EINTERNAL, nil},
		{"ResourceNotFound", &types.ResourceNotFoundException{}, core.EUNAVAILABLE, []string{`"the-table"`, "does not exist"}},
		{"ProvisionedThroughputExceeded", &types.ProvisionedThroughputExceededException{}, core.EUNAVAILABLE, []string{`"the-table"`}},
		{"RequestLimitExceeded", &types.RequestLimitExceeded{}, core.EUNAVAILABLE, nil},
		{"ThrottlingException", &types.ThrottlingException{}, core.EUNAVAILABLE, nil},
		{"ThrottlingByCode", &smithy.GenericAPIError{Code: "ThrottlingException"}, core.EUNAVAILABLE, nil},
		{"InternalServerError", &types.InternalServerError{}, core.EUNAVAILABLE, nil},
		{"Unreachable", &smithyhttp.RequestSendError{Err: errors.New("connection refused")}, core.EUNAVAILABLE, []string{"cannot be reached"}},
		{"ValidationException", &smithy.GenericAPIError{Code: "ValidationException", Message: "Item size has exceeded the maximum allowed size"}, core.EINVALID, []string{"put step 3", "Item size"}},
		{"Deadline", fmt.Errorf("wrapped: %w", context.DeadlineExceeded), core.ETIMEOUT, nil},
		{"Canceled", &smithy.CanceledError{Err: context.Canceled}, core.ETIMEOUT, nil},
		{"AccessDenied", &smithy.GenericAPIError{Code: "AccessDeniedException"}, core.EINTERNAL, nil},
		{"Other", errors.New("boom"), core.EINTERNAL, []string{"boom"}},
		{"CoreErrorPassesThrough", core.Errorf(core.ENOTFOUND, "gone"), core.ENOTFOUND, []string{"gone"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.fail(asOperation(tt.err), "put step %d", 3)
			if got := core.ErrorCode(err); got != tt.code {
				t.Errorf("code = %q (%v), want %q", got, err, tt.code)
			}
			if !strings.Contains(err.Error(), "put step 3") && tt.code != core.ENOTFOUND {
				t.Errorf("message %q does not name the operation", err)
			}
			for _, want := range tt.says {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q does not say %q", err, want)
				}
			}
		})
	}
	if err := s.fail(nil, "anything"); err != nil {
		t.Errorf("fail(nil) = %v, want nil", err)
	}
}

// TestErrorsFromTheService checks the mapping on answers of the emulator
// itself, not only on constructed errors.
func TestErrorsFromTheService(t *testing.T) {
	em := startEmulator(t)
	ctx := context.Background()
	s := em.store(t)
	missing := New(em.client, "no-such-table")
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	tests := []struct {
		name string
		call func() error
		code string
		says string
	}{
		{"MissingTable", func() error { _, err := missing.GetExecution(ctx, "default", "x"); return err }, core.EUNAVAILABLE, `"no-such-table"`},
		{"MissingTableOnWrite", func() error { return missing.CreateExecution(ctx, coretest.NewExecution("default", "x")) }, core.EUNAVAILABLE, `"no-such-table"`},
		{"TableExists", func() error { return s.CreateTable(ctx) }, core.ECONFLICT, "exists already"},
		{"ContextCanceled", func() error { _, err := s.GetRecord(canceled, "default", "chain", "x"); return err }, core.ETIMEOUT, "get chain"},
		{"TimeOutOfRange", func() error {
			return s.CreateRecord(ctx, "default", coretest.NewRecord("chain", "x", time.Time{}))
		}, core.EINVALID, "createdAt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if got := core.ErrorCode(err); got != tt.code || !strings.Contains(fmt.Sprint(err), tt.says) {
				t.Errorf("error = %v (code %q), want code %q saying %s", err, got, tt.code, tt.says)
			}
		})
	}
	// Validation errors of the service itself, which the store's own
	// checks would catch before sending: the same mapping applies.
	validation := []struct {
		name string
		it   item
	}{
		{"KeyOfTheWrongType", item{attrPK: attrN(1), attrSK: attrS("x")}},
		{"ItemOverTheLimit", item{attrPK: attrS("p"), attrSK: attrS("x"), attrBody: attrB(make([]byte, 420_000))}},
	}
	for _, tt := range validation {
		t.Run(tt.name, func(t *testing.T) {
			_, err := em.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: tt.it})
			if got := s.fail(err, "put a bad item"); core.ErrorCode(got) != core.EINVALID || !strings.Contains(got.Error(), "put a bad item") {
				t.Errorf("the service's answer %v maps to %v, want invalid naming the operation", err, got)
			}
		})
	}
}

// cannedClient answers every request with the next of its answers, as
// DynamoDB would, and counts the requests.
type cannedClient struct {
	mu      sync.Mutex
	answers []string
	// status is the answers' HTTP status, 400 if 0.
	status int
	// during, if set, runs while a request is in flight.
	during func()
	calls  int
}

func (c *cannedClient) Do(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	body := c.answers[min(c.calls, len(c.answers)-1)]
	c.calls++
	if c.during != nil {
		c.during()
	}
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	return &http.Response{
		StatusCode: cmp.Or(c.status, http.StatusBadRequest),
		Header:     http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
		Body:       io.NopCloser(strings.NewReader(body)),
		Request:    req,
	}, nil
}

// client returns a DynamoDB client that sends its requests to c.
func (c *cannedClient) client() *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), HTTPClient: c,
		Credentials: aws.AnonymousCredentials{}, RetryMaxAttempts: 1,
	})
}

// cancelled is the answer of a transaction cancelled for reasons.
func cancelled(reasons ...string) string {
	var rs []string
	for _, r := range reasons {
		rs = append(rs, fmt.Sprintf(`{"Code":%q}`, r))
	}
	return `{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"cancelled","CancellationReasons":[` + strings.Join(rs, ",") + `]}`
}

func TestTransactionConflictIsRetried(t *testing.T) {
	tests := []struct {
		name    string
		answers []string
		calls   int
		says    string
	}{
		{"ThenTheConditionDecides", []string{cancelled("None", "TransactionConflict"), cancelled("None", "ConditionalCheckFailed")}, 2, "already committed"},
		{"UntilTheRetriesRunOut", []string{cancelled("TransactionConflict", "None")}, conflictRetries + 1, "commit execution"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &cannedClient{answers: tt.answers}
			e := coretest.NewExecution("default", "x")
			e.Version = 3
			err := New(fake.client(), "t").CommitExecution(context.Background(), e, &core.Step{Index: 1})
			if core.ErrorCode(err) != core.ECONFLICT || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("CommitExecution = %v, want a conflict saying %q", err, tt.says)
			}
			if fake.calls != tt.calls || e.Version != 3 {
				t.Errorf("%d requests, version %d; want %d requests and the version kept", fake.calls, e.Version, tt.calls)
			}
		})
	}
}

// TestWriteInFlightOutlivesCancel: a write the caller cancels while it is
// in flight reports what DynamoDB did with it, so that a compare-and-swap
// that went through is never reported as not done.
func TestWriteInFlightOutlivesCancel(t *testing.T) {
	tests := []struct {
		name  string
		write func(ctx context.Context, s *Store, e *core.Execution) error
	}{
		{"Commit", func(ctx context.Context, s *Store, e *core.Execution) error { return s.CommitExecution(ctx, e, nil) }},
		{"CommitWithStep", func(ctx context.Context, s *Store, e *core.Execution) error {
			return s.CommitExecution(ctx, e, &core.Step{Index: 1})
		}},
		{"Create", func(ctx context.Context, s *Store, e *core.Execution) error { return s.CreateExecution(ctx, e) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			fake := &cannedClient{answers: []string{"{}"}, status: http.StatusOK, during: cancel}
			e := coretest.NewExecution("default", "x")
			e.Version = 3
			if err := tt.write(ctx, New(fake.client(), "t"), e); err != nil {
				t.Errorf("write cancelled in flight = %v, want DynamoDB's success", err)
			}
			if e.Version == 3 {
				t.Error("the version did not move after a successful write")
			}
			if err := tt.write(ctx, New(fake.client(), "t"), e); core.ErrorCode(err) != core.ETIMEOUT || fake.calls != 1 {
				t.Errorf("write after the cancel = %v with %d requests, want timeout and nothing sent", err, fake.calls)
			}
		})
	}
}
