// Package awsmoto starts the AWS-protocol emulator (moto_server) for the
// tests of the AWS adapters: one server on 127.0.0.1 and a free port per
// test binary's request, stopped by PID when the test ends, and on Linux
// by the kernel when the test binary dies without ending its tests (a
// test timeout). It is imported only from _test.go files.
//
// When moto_server is not installed the tests that need it are skipped —
// except under CI=true, where a missing emulator fails them, so that CI
// never passes by skipping the AWS adapters.
package awsmoto

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Region is the region every test client uses.
const Region = "us-east-1"

// Server is a running moto_server.
type Server struct {
	// Endpoint is its base URL, such as "http://127.0.0.1:41234".
	Endpoint string
}

// Start starts moto_server for t and stops it when t ends. The binary is
// taken from $MOTO_SERVER, else looked up on PATH.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := os.Getenv("MOTO_SERVER")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("moto_server"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("moto_server is not installed, and CI must test the AWS adapters: %v", err)
			}
			t.Skipf("moto_server is not installed (%v); the AWS adapter tests need it", err)
		}
	}
	port := freePort(t)
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = nil, nil
	stopWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start moto_server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	s := &Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port)}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return s
		}
		select {
		case <-done:
			t.Fatalf("moto_server exited before it served")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("moto_server did not start within a minute: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Config returns an AWS configuration pointed at the server, with static
// test credentials.
func (s *Server) Config() aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: aws.String(s.Endpoint),
	}
}

// Reset drops every resource the server holds, for a test that needs a
// clean account.
func (s *Server) Reset(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint+"/moto-api/reset", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
