// Package egress guards stepwise's outbound HTTP against server-side request
// forgery. Hooks, webhooks and scripts send requests to addresses that
// chain authors, OpenAPI documents or models chose, so every connection is
// checked where it is made: the client's dialer resolves the host itself,
// checks every address it resolves to and connects only to a checked
// address. A name that resolves to a public address when it is validated
// and to the cloud metadata service when it is dialed (DNS rebinding)
// therefore cannot slip past, and neither can a redirect, because the
// client does not follow any.
package egress

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// Resolver looks up the addresses of a host name. Tests and deployments
// with their own name service supply one; nil means the system resolver.
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

// Policy says where outbound connections may go.
type Policy struct {
	// AllowPrivate lets connections reach loopback and private-network
	// addresses (127/8, ::1, 10/8, 172.16/12, 192.168/16, 100.64/10,
	// fc00::/7): right for a CLI talking to services on the same machine,
	// wrong for a shared server, whose neighbours those are. Link-local
	// (cloud metadata), unspecified, multicast and broadcast addresses
	// stay refused regardless.
	AllowPrivate bool
	// Resolve replaces the system resolver when set.
	Resolve Resolver
}

// Timeouts of the client's connection set-up. A dead host fails fast; the
// length of a whole request is left to its context, since a hook may
// legitimately work for minutes before answering.
const (
	dialTimeout = 5 * time.Second
	tlsTimeout  = 5 * time.Second
)

// NewClient returns an HTTP client that connects only where p allows, goes
// through no proxy (a proxy would be the only address the guard saw) and
// follows no redirect: a 3xx comes back to the caller as the response, so
// that headers such as API keys never travel to an origin nobody approved.
// Bound each request with its context; the client has no overall timeout.
func NewClient(p Policy) *http.Client {
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           p.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   tlsTimeout,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// DialContext connects to address ("host:port") over TCP after resolving
// the host and checking every address it resolves to: if any is refused the
// host is refused, without a connection, since a name that mixes public and
// internal addresses is either misconfigured or an attack. It then tries
// the checked addresses in order, so the address connected to is always
// one that was checked. The refusal is an EFORBIDDEN error naming the host
// and the reason.
func (p Policy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, core.Errorf(core.EFORBIDDEN, "egress: network %q is not allowed", network)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, core.WrapError(core.EINVALID, err, "egress: address %q", address)
	}
	addrs, err := p.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if err := p.Check(host, a); err != nil {
			return nil, err
		}
	}
	d := net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	var errs []error
	for _, a := range addrs {
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// resolve returns the addresses of host: the host itself if it is an IP
// literal, else what the resolver answers.
func (p Policy) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	lookup := p.Resolve
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	addrs, err := lookup(ctx, host)
	if err != nil {
		return nil, core.WrapError(core.EUNAVAILABLE, err, "egress: resolve %q", host)
	}
	if len(addrs) == 0 {
		return nil, core.Errorf(core.EUNAVAILABLE, "egress: %q resolves to no address", host)
	}
	return addrs, nil
}
