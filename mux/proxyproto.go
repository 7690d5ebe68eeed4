package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
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

// Headers ValidateProxyHeader refuses: go-proxyproto (v0.15.0) checks
// neither.
var (
	// ErrProxyChecksum: a v2 header's CRC32C TLV does not match the header,
	// which was then damaged or forged on the way.
	ErrProxyChecksum = errors.New("proxyproto: CRC32C TLV does not match the header")
	// ErrProxyDatagram: the header relays a UDP (or unix datagram) flow; a
	// TCP stream is not one, and its client would be passed on to a
	// passthrough backend as a TCP one.
	ErrProxyDatagram = errors.New("proxyproto: header relays a datagram flow, not a stream")
)

// ValidateProxyHeader is every PROXY reader's go-proxyproto validator: it
// refuses a PROXY command for a datagram family and a v2 one whose CRC32C
// TLV does not match or whose TLVs do not parse. A LOCAL header is not
// checked: nothing of it is used, and the spec has its block discarded
// and the connection accepted (HAProxy reads no TLV of it). AWS NLB's
// health checks send one with the TCPv4 family and TLVs alone, which
// go-proxyproto reads as addresses and TLVs out of step.
func ValidateProxyHeader(h *proxyproto.Header) error {
	if !h.Command.IsProxy() {
		return nil
	}
	if h.TransportProtocol.IsDatagram() {
		return ErrProxyDatagram
	}
	if h.Version != 2 {
		return nil
	}
	b, err := h.Format()
	if err != nil {
		return fmt.Errorf("%w: %w", proxyproto.ErrInvalidAddress, err)
	}
	// The TLVs follow the fixed address block of the family (a PROXY
	// command is never UNSPEC).
	i := 16
	switch {
	case h.TransportProtocol.IsIPv4():
		i += 12
	case h.TransportProtocol.IsIPv6():
		i += 36
	case h.TransportProtocol.IsUnix():
		i += 216
	}
	crcAt := -1
	for i < len(b) {
		if len(b)-i < 3 {
			return proxyproto.ErrTruncatedTLV
		}
		n := int(binary.BigEndian.Uint16(b[i+1 : i+3]))
		if i+3+n > len(b) {
			return proxyproto.ErrTruncatedTLV
		}
		if proxyproto.PP2Type(b[i]) == proxyproto.PP2_TYPE_CRC32C {
			if n != 4 || crcAt >= 0 {
				return fmt.Errorf("%w: CRC32C TLV of %d bytes, or more than one", proxyproto.ErrMalformedTLV, n)
			}
			crcAt = i + 3
		}
		i += 3 + n
	}
	if crcAt < 0 {
		return nil
	}
	// The checksum covers the whole header with its own value zeroed.
	// Format re-encodes what was read: the same bytes, but for a unix
	// address's bytes after its NUL, which come back as zeros.
	want := binary.BigEndian.Uint32(b[crcAt:])
	clear(b[crcAt : crcAt+4])
	if crc32.Checksum(b, castagnoli) != want {
		return ErrProxyChecksum
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

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
	ErrProxyChecksum,
	ErrProxyDatagram,
}

func isProxyErr(err error) bool {
	for _, e := range proxyHeaderErrs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
