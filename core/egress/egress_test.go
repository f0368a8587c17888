package egress_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/egress"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		addr      string
		strict    bool   // allowed without AllowPrivate
		lenient   bool   // allowed with AllowPrivate
		reasonHas string // part of the refusal's reason
	}{
		{"93.184.216.34", true, true, ""},
		{"2606:2800:220:1:248:1893:25c8:1946", true, true, ""},
		{"127.0.0.1", false, true, "loopback"},
		{"127.8.9.10", false, true, "loopback"},
		{"::1", false, true, "loopback"},
		{"10.0.0.1", false, true, "private"},
		{"172.16.5.4", false, true, "private"},
		{"172.32.0.1", true, true, ""},
		{"192.168.1.1", false, true, "private"},
		{"100.64.0.1", false, true, "carrier-grade NAT"},
		{"fc00::1", false, true, "private"},
		{"fd12:3456::1", false, true, "private"},
		{"169.254.169.254", false, false, "link-local"},
		{"169.254.170.2", false, false, "link-local"},
		{"fe80::1", false, false, "link-local"},
		{"fe80::1%eth0", false, false, "link-local"},
		{"fd00:ec2::254", false, false, "cloud metadata"},
		{"0.0.0.0", false, false, "unspecified"},
		{"0.1.2.3", false, false, "unspecified"},
		{"::", false, false, "unspecified"},
		{"224.0.0.1", false, false, "multicast"},
		{"ff02::1", false, false, "multicast"},
		{"255.255.255.255", false, false, "broadcast"},
		{"::ffff:169.254.169.254", false, false, "link-local"},
		{"::ffff:127.0.0.1", false, true, "loopback"},
		{"::ffff:93.184.216.34", true, true, ""},
		{"::ffff:100.64.0.1", false, true, "carrier-grade NAT"},
		{"::ffff:0.1.2.3", false, false, "unspecified"},
		{"64:ff9b::a9fe:a9fe", false, false, "link-local"},
		{"64:ff9b::7f00:1", false, true, "loopback"},
		{"2002:a9fe:a9fe::1", false, false, "link-local"},
		{"2002:0a00:0001::1", false, true, "private"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tt.addr)
			for _, c := range []struct {
				allowPrivate, want bool
			}{{false, tt.strict}, {true, tt.lenient}} {
				err := egress.Policy{AllowPrivate: c.allowPrivate}.Check("h.example", a)
				if (err == nil) != c.want {
					t.Fatalf("AllowPrivate=%v: Check = %v, want allowed=%v", c.allowPrivate, err, c.want)
				}
				if err == nil {
					continue
				}
				if core.ErrorCode(err) != core.EFORBIDDEN {
					t.Errorf("AllowPrivate=%v: code = %s, want forbidden", c.allowPrivate, core.ErrorCode(err))
				}
				if msg := err.Error(); !strings.Contains(msg, "h.example") || !strings.Contains(msg, tt.reasonHas) {
					t.Errorf("AllowPrivate=%v: error %q should name the host and say %q", c.allowPrivate, msg, tt.reasonHas)
				}
			}
		})
	}
}

// countingServer is an HTTP server on 127.0.0.1 that counts the
// connections it accepts, so tests can tell that a refusal never
// connected.
func countingServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// staticResolver answers every lookup with the same addresses.
func staticResolver(addrs ...string) egress.Resolver {
	return func(context.Context, string) ([]netip.Addr, error) {
		out := make([]netip.Addr, len(addrs))
		for i, a := range addrs {
			out[i] = netip.MustParseAddr(a)
		}
		return out, nil
	}
}

func TestClient(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	url := func(host string) string { return "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/" }
	tests := []struct {
		name     string
		policy   egress.Policy
		url      string
		wantCode string // "" means the request reaches the server
	}{
		{"LoopbackRefused", egress.Policy{}, url("127.0.0.1"), core.EFORBIDDEN},
		{"LoopbackAllowed", egress.Policy{AllowPrivate: true}, url("127.0.0.1"), ""},
		{"MappedLoopbackRefused", egress.Policy{}, url("::ffff:127.0.0.1"), core.EFORBIDDEN},
		{"MetadataRefusedEvenIfPrivateAllowed", egress.Policy{AllowPrivate: true}, "http://169.254.169.254/latest/meta-data/", core.EFORBIDDEN},
		{"MappedMetadataRefused", egress.Policy{AllowPrivate: true}, "http://[::ffff:169.254.169.254]/", core.EFORBIDDEN},
		{"NameResolvingToPrivateRefused", egress.Policy{Resolve: staticResolver("10.0.0.1")}, url("internal.example"), core.EFORBIDDEN},
		{"NameResolvingToLoopbackRefused", egress.Policy{Resolve: staticResolver("127.0.0.1")}, url("rebind.example"), core.EFORBIDDEN},
		{"NameWithOneBadAddressRefused", egress.Policy{AllowPrivate: true, Resolve: staticResolver("127.0.0.1", "169.254.169.254")}, url("mixed.example"), core.EFORBIDDEN},
		{"NameDialsTheResolvedAddress", egress.Policy{AllowPrivate: true, Resolve: staticResolver("127.0.0.1")}, url("service.example"), ""},
		{"ResolverFailure", egress.Policy{Resolve: func(context.Context, string) ([]netip.Addr, error) { return nil, errors.New("no such host") }}, url("gone.example"), core.EUNAVAILABLE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := conns.Load()
			resp, err := egress.NewClient(tt.policy).Get(tt.url)
			if resp != nil {
				_ = resp.Body.Close()
			}
			if tt.wantCode == "" {
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("Get = %v, %v; want 200", resp, err)
				}
				return
			}
			if core.ErrorCode(err) != tt.wantCode {
				t.Fatalf("Get err = %v (code %s), want %s", err, core.ErrorCode(err), tt.wantCode)
			}
			if after := conns.Load(); after != before {
				t.Errorf("a refused request opened %d connection(s)", after-before)
			}
		})
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Int32
	target, _ := countingServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { followed.Add(1) }))
	srv, _ := countingServer(t, http.RedirectHandler(target.URL, http.StatusFound))
	resp, err := egress.NewClient(egress.Policy{AllowPrivate: true}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusFound || followed.Load() != 0 {
		t.Errorf("status %d, redirect target hit %d times; want 302 and 0", resp.StatusCode, followed.Load())
	}
}

func TestDialContextRefusesOtherNetworks(t *testing.T) {
	_, err := egress.Policy{AllowPrivate: true}.DialContext(context.Background(), "udp", "127.0.0.1:53")
	if core.ErrorCode(err) != core.EFORBIDDEN {
		t.Errorf("DialContext(udp) = %v, want forbidden", err)
	}
}
