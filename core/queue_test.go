package core_test

import (
	"testing"

	"github.com/stepwise-run/stepwise/core"
)

func TestQueueMessageCodec(t *testing.T) {
	m := core.QueueMessage{ID: "m1", Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex", Version: 7}
	b, err := core.EncodeQueueMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := core.DecodeQueueMessage(b)
	if err != nil || got != m {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, m)
	}
	for name, body := range map[string]string{
		"NotJSON":     `hello`,
		"UnknownKind": `{"kind":"explode","tenant":"a","execution_id":"e"}`,
		"NoExecution": `{"kind":"continue","tenant":"a"}`,
		"NoTenant":    `{"kind":"continue","execution_id":"e"}`,
		"Trailing":    `{"kind":"continue","tenant":"a","execution_id":"e"} {}`,
		"EventBridge": `{"version":"0","id":"6a7e8feb","detail-type":"execution.finished","source":"stepwise","detail":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := core.DecodeQueueMessage([]byte(body)); core.ErrorCode(err) != core.EINVALID {
				t.Errorf("DecodeQueueMessage(%s) = %v, want EINVALID", body, err)
			}
		})
	}
}
