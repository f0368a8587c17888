package awsdynamo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/coretest"
	"github.com/stepwise-run/stepwise/infra/awsmoto"
)

// serialClient sends one request at a time and reads each answer whole
// before the next request goes: moto does not isolate a transaction from
// concurrent requests (see the package doc), DynamoDB does.
type serialClient struct {
	mu   sync.Mutex
	next *http.Client
}

func (c *serialClient) Do(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp, err := c.next.Do(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// emulator is a moto_server for one test and a client of it.
type emulator struct {
	// cfg points at the server, for the clients of other services.
	cfg    aws.Config
	client *dynamodb.Client
	tables atomic.Int64
}

// startEmulator starts moto_server for t.
func startEmulator(t *testing.T) *emulator {
	t.Helper()
	cfg := awsmoto.Start(t).Config()
	serial := cfg.Copy()
	serial.HTTPClient = &serialClient{next: &http.Client{}}
	return &emulator{cfg: cfg, client: dynamodb.NewFromConfig(serial)}
}

// store returns a store over a new, empty table, dropped when t ends.
func (em *emulator) store(t *testing.T) *Store {
	t.Helper()
	name := fmt.Sprintf("stepwise-%d", em.tables.Add(1))
	s := New(em.client, name)
	if err := s.CreateTable(context.Background()); err != nil {
		t.Fatalf("CreateTable(%s): %v", name, err)
	}
	t.Cleanup(func() {
		_, _ = em.client.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	return s
}

func TestRecordStore(t *testing.T) {
	em := startEmulator(t)
	coretest.RecordStoreSuite(t, func(t *testing.T) core.RecordStore { return em.store(t) })
}

func TestExecutionStore(t *testing.T) {
	em := startEmulator(t)
	coretest.ExecutionStoreSuite(t, func(t *testing.T) core.ExecutionStore { return em.store(t) })
}

func TestCounters(t *testing.T) {
	em := startEmulator(t)
	coretest.CounterSuite(t, func(t *testing.T) core.Counters { return em.store(t) })
}

func TestBudgets(t *testing.T) {
	em := startEmulator(t)
	coretest.BudgetSuite(t, func(t *testing.T) coretest.Store { return em.store(t) })
}

func TestDurability(t *testing.T) {
	em := startEmulator(t)
	coretest.DurabilitySuite(t, func(t *testing.T) core.ExecutionStore { return em.store(t) })
}
