package egress

import (
	"net/netip"

	"github.com/stepwise-run/stepwise/core"
)

// Check returns nil if p allows connecting to addr, which host resolved to,
// or else an EFORBIDDEN error naming the host and the reason. IPv6 forms
// that carry an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, NAT64
// 64:ff9b::/96, 6to4 2002::/16) are judged by that IPv4 address, since
// that is where the packets end up.
func (p Policy) Check(host string, addr netip.Addr) error {
	reason, always := classify(embeddedIPv4(addr.WithZone("")))
	if reason == "" || (!always && p.AllowPrivate) {
		return nil
	}
	what := host
	if host != addr.String() {
		what = host + " (" + addr.String() + ")"
	}
	if !always {
		reason += "; private addresses are not allowed here"
	}
	return core.Errorf(core.EFORBIDDEN, "egress: refusing to connect to %s: %s", what, reason)
}

// classify says why a connection to a may be dangerous, or "" if it is an
// ordinary public address. always reports that the reason holds even
// where private addresses are allowed: link-local space is where cloud
// metadata services hand out credentials, and the rest are not places a
// hook can legitimately be.
func classify(a netip.Addr) (reason string, always bool) {
	switch {
	case !a.IsValid():
		return "not a valid IP address", true
	case a.IsUnspecified() || a.Is4() && netip.MustParsePrefix("0.0.0.0/8").Contains(a):
		return "unspecified address (reaches the local host)", true
	case a == netip.MustParseAddr("fd00:ec2::254"):
		return "cloud metadata address", true
	case a.IsLinkLocalUnicast():
		return "link-local address (where cloud metadata services live)", true
	case a.IsMulticast():
		return "multicast address", true
	case a.Is4() && netip.MustParsePrefix("240.0.0.0/4").Contains(a):
		return "reserved or broadcast address", true
	case a.IsLoopback():
		return "loopback address", false
	case a.IsPrivate():
		return "private-network address", false
	case a.Is4() && netip.MustParsePrefix("100.64.0.0/10").Contains(a):
		return "carrier-grade NAT address", false
	}
	return "", false
}

// embeddedIPv4 returns the IPv4 address an IPv6 address stands for, or a
// itself.
func embeddedIPv4(a netip.Addr) netip.Addr {
	if a.Is4In6() {
		return a.Unmap()
	}
	if !a.Is6() {
		return a
	}
	b := a.As16()
	switch {
	case netip.MustParsePrefix("64:ff9b::/96").Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	case netip.MustParsePrefix("2002::/16").Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
	}
	return a
}
