package mux

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/internal/errlist"
)

// ProxyPolicy builds the per-peer PROXY protocol policy for --proxy-protocol-from:
// peers inside the CIDRs MUST send a header (a trusted load balancer that
// forgets it would make every client look like the balancer); every other
// peer MUST NOT (a header from an untrusted address is a spoofing attempt
// and the connection is refused, so it never changes the client address).
// go-proxyproto's own default trusts any peer, hence the explicit policy.
func ProxyPolicy(cidrs []string) (func(net.Addr) proxyproto.Policy, error) {
	var prefixes []netip.Prefix
	var errs []error
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		p, err := netip.ParsePrefix(c)
		if err != nil {
			// A bare address means just that host. ParseAddr takes
			// anything after "%" as a zone, so "fe80::1%eth0/64" would
			// silently become a /128: refuse it instead.
			if a, aerr := netip.ParseAddr(c); aerr == nil && !strings.Contains(c, "/") {
				p = netip.PrefixFrom(a.WithZone(""), a.BitLen())
			} else {
				errs = append(errs, fmt.Errorf("proxy-protocol-from %q: not a CIDR or IP address", c))
				continue
			}
		}
		// Peers are matched unmapped, so an IPv4-mapped entry
		// (::ffff:10.0.0.5, as ss shows peers of a dual-stack socket)
		// must be unmapped too or it never matches.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		prefixes = append(prefixes, p.Masked())
	}
	if len(errs) > 0 {
		return nil, errlist.Join(errs...)
	}
	return func(peer net.Addr) proxyproto.Policy {
		// Prefixes carry no zone and never contain a zoned address:
		// drop it so a link-local balancer (fe80::1%eth0) matches.
		a := addrPort(peer).Addr().Unmap().WithZone("")
		for _, p := range prefixes {
			if p.Contains(a) {
				return proxyproto.REQUIRE
			}
		}
		return proxyproto.REJECT
	}, nil
}

// BalancersOwn reports whether h is a v2 LOCAL header: the balancer's own
// connection (a health check), or a client HAProxy relays from an address
// that is not IP, counted in a pool of the balancer's own. go-proxyproto also
// reads a v1 "PROXY UNKNOWN" line as LOCAL, but that one relays a client
// the balancer could not name (a unix-socket front, say): it is counted as
// the balancer's address like any other client, not exempted.
func BalancersOwn(h *proxyproto.Header) bool {
	return h != nil && h.Version == 2 && h.Command.IsLocal()
}

// proxyHeaderErrs are go-proxyproto's sentinels for a PROXY header that is
// missing where required, present where refused, or malformed; its reader
// returns them as they are or wrapped with %w.
var proxyHeaderErrs = []error{
	proxyproto.ErrNoProxyProtocol,
	proxyproto.ErrSuperfluousProxyHeader,
	proxyproto.ErrInvalidUpstream,
	proxyproto.ErrCantReadVersion1Header,
	proxyproto.ErrVersion1HeaderTooLong,
	proxyproto.ErrLineMustEndWithCrlf,
	proxyproto.ErrCantReadProtocolVersionAndCommand,
	proxyproto.ErrCantReadAddressFamilyAndProtocol,
	proxyproto.ErrCantReadLength,
	proxyproto.ErrCantResolveSourceUnixAddress,
	proxyproto.ErrCantResolveDestinationUnixAddress,
	proxyproto.ErrUnknownProxyProtocolVersion,
	proxyproto.ErrUnsupportedProtocolVersionAndCommand,
	proxyproto.ErrUnsupportedAddressFamilyAndProtocol,
	proxyproto.ErrInvalidLength,
	proxyproto.ErrInvalidAddress,
	proxyproto.ErrInvalidPortNumber,
	proxyproto.ErrTruncatedTLV,
	proxyproto.ErrMalformedTLV,
	proxyproto.ErrIncompatibleTLV,
}

func isProxyErr(err error) bool {
	for _, e := range proxyHeaderErrs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
