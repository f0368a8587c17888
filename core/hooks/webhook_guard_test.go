package hooks_test

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks"
)

func TestWebhookEgressGuard(t *testing.T) {
	rec := newRecorder(t, reply(http.StatusOK, "text/plain", "reached"))
	_, port, err := net.SplitHostPort(rec.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	at := func(host string) string { return "http://" + net.JoinHostPort(host, port) + "/" }
	// resolveTo points every name at addr, standing in for DNS, including
	// a rebinding DNS server that answered a public address earlier.
	resolveTo := func(addr string) func(context.Context, string) ([]netip.Addr, error) {
		return func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr(addr)}, nil
		}
	}
	tests := []struct {
		name    string
		cfg     hooks.WebhookConfig
		url     string
		reaches bool   // the request reaches the test server
		errHas  string // part of the refusal, which names the host and why
	}{
		{"LoopbackRefusedByDefault", hooks.WebhookConfig{}, at("127.0.0.1"), false, "127.0.0.1: loopback"},
		{"LoopbackAllowedWithAllowPrivate", hooks.WebhookConfig{AllowPrivate: true}, at("127.0.0.1"), true, ""},
		{"MetadataRefusedEvenWithAllowPrivate", hooks.WebhookConfig{AllowPrivate: true}, "http://169.254.169.254/latest/meta-data/iam/", false, "169.254.169.254: link-local"},
		{"MappedMetadataUnwrapped", hooks.WebhookConfig{AllowPrivate: true}, "http://[::ffff:169.254.169.254]/", false, "link-local"},
		{"MappedLoopbackUnwrapped", hooks.WebhookConfig{}, at("::ffff:127.0.0.1"), false, "loopback"},
		{"MappedLoopbackAllowedWithAllowPrivate", hooks.WebhookConfig{AllowPrivate: true}, at("::ffff:127.0.0.1"), true, ""},
		{"NameResolvingToPrivateRefused", hooks.WebhookConfig{Resolve: resolveTo("10.0.0.1")}, at("hooks.example.com"), false, "hooks.example.com (10.0.0.1): private"},
		{"NameResolvingToLoopbackRefused", hooks.WebhookConfig{Resolve: resolveTo("127.0.0.1")}, at("rebind.example.com"), false, "rebind.example.com (127.0.0.1): loopback"},
		{"NameResolvingToMetadataRefused", hooks.WebhookConfig{AllowPrivate: true, Resolve: resolveTo("169.254.169.254")}, at("metadata.example.com"), false, "metadata.example.com (169.254.169.254): link-local"},
		{"NameDialsWhatWasChecked", hooks.WebhookConfig{AllowPrivate: true, Resolve: resolveTo("127.0.0.1")}, at("local.example.com"), true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(rec.requests())
			r := hooks.NewRegistry(nil, hooks.Webhook(tt.cfg))
			got, err := r.Call(context.Background(), core.HookCall{Hook: "webhook", Input: core.String("{}"), Args: map[string]string{"url": tt.url}, IdempotencyKey: "e/1/1"})
			reached := len(rec.requests()) - before
			if tt.reaches {
				if err != nil || got != core.String("reached") || reached != 1 {
					t.Fatalf("Call = %#v, %v with %d request(s); want the reply of the test server", got, err, reached)
				}
				return
			}
			if core.ErrorCode(err) != core.EFORBIDDEN || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("err = %v, want forbidden naming %q", err, tt.errHas)
			}
			if core.IsUpstream(err) {
				t.Errorf("a refusal of stepwise's own is marked as the webhook's answer: %v", err)
			}
			if reached != 0 {
				t.Errorf("a refused call reached the server %d time(s)", reached)
			}
		})
	}
}
