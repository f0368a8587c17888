package awsmoto_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

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

// TestEmulatorDiesWithTheTestBinary runs this test binary again as a child
// that starts the emulator and then hangs, kills the child as a test
// timeout would (no cleanups run), and checks that the emulator stops too.
func TestEmulatorDiesWithTheTestBinary(t *testing.T) {
	if os.Getenv("AWSMOTO_CHILD") == "1" {
		fmt.Println("endpoint=" + awsmoto.Start(t).Endpoint)
		select {}
	}
	if runtime.GOOS != "linux" {
		t.Skip("only Linux ties the emulator's life to the test binary's")
	}
	if _, err := exec.LookPath("moto_server"); err != nil && os.Getenv("MOTO_SERVER") == "" {
		awsmoto.Start(t) // skips, or fails under CI
	}
	child := exec.Command(os.Args[0], "-test.run", "^TestEmulatorDiesWithTheTestBinary$")
	child.Env = append(os.Environ(), "AWSMOTO_CHILD=1")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	endpoint, ok := strings.CutPrefix(strings.TrimSpace(line), "endpoint=")
	if err != nil || !ok {
		t.Fatalf("the child said %q (%v), want its emulator's endpoint", line, err)
	}
	if resp, err := http.Get(endpoint + "/moto-api/"); err != nil {
		t.Fatalf("the child's emulator does not answer: %v", err)
	} else {
		resp.Body.Close()
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := client.Get(endpoint + "/moto-api/")
		if err != nil {
			return // stopped
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the emulator at %s still answers 15 s after the test binary died", endpoint)
		}
	}
}
