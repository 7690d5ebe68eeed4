package mux_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/mux"
)

func TestProxyPolicy(t *testing.T) {
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	zoned := func(ip, zone string) net.Addr {
		return &net.TCPAddr{IP: net.ParseIP(ip), Port: 1234, Zone: zone}
	}
	cases := []struct {
		name  string
		cidrs []string
		peer  net.Addr
		want  proxyproto.Policy
	}{
		{"loopback", []string{"127.0.0.0/8"}, tcp("127.0.0.1:5000"), proxyproto.REQUIRE},
		{"loopback edge", []string{"127.0.0.0/8"}, tcp("127.255.255.255:5000"), proxyproto.REQUIRE},
		{"outside", []string{"127.0.0.0/8"}, tcp("128.0.0.1:5000"), proxyproto.REJECT},
		{"v4-mapped peer on a dual-stack socket", []string{"127.0.0.0/8"}, tcp("[::ffff:127.0.0.1]:5000"), proxyproto.REQUIRE},
		{"v4-mapped peer, 16-byte net.IP", []string{"10.0.0.0/8"}, &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 1}, proxyproto.REQUIRE},
		{"IPv6 loopback is not IPv4 loopback", []string{"127.0.0.0/8"}, tcp("[::1]:5000"), proxyproto.REJECT},
		{"bare address", []string{"10.0.0.5"}, tcp("10.0.0.5:1"), proxyproto.REQUIRE},
		{"bare address, neighbour", []string{"10.0.0.5"}, tcp("10.0.0.6:1"), proxyproto.REJECT},
		{"host bits in the CIDR", []string{"10.1.2.3/8"}, tcp("10.200.0.1:1"), proxyproto.REQUIRE},
		{"spaces", []string{" 192.0.2.0/24 "}, tcp("192.0.2.9:1"), proxyproto.REQUIRE},
		{"several", []string{"192.0.2.0/24", "2001:db8::/32"}, tcp("[2001:db8::7]:1"), proxyproto.REQUIRE},
		{"IPv6 outside", []string{"2001:db8::/32"}, tcp("[2001:db9::7]:1"), proxyproto.REJECT},
		{"IPv4 peer, IPv6 prefix", []string{"::/0"}, tcp("10.0.0.1:1"), proxyproto.REJECT},
		{"link-local peer with a zone", []string{"fe80::/10"}, zoned("fe80::1", "eth0"), proxyproto.REQUIRE},
		{"bare link-local address with a zone", []string{"fe80::1%eth0"}, zoned("fe80::1", "eth0"), proxyproto.REQUIRE},
		{"bare link-local address, other host", []string{"fe80::1%eth0"}, zoned("fe80::2", "eth0"), proxyproto.REJECT},
		{"v4-mapped prefix", []string{"::ffff:10.0.0.0/104"}, tcp("10.0.0.5:1"), proxyproto.REQUIRE},
		{"v4-mapped bare address", []string{"::ffff:10.0.0.5"}, tcp("[::ffff:10.0.0.5]:1"), proxyproto.REQUIRE},
		{"v4-mapped bare address, neighbour", []string{"::ffff:10.0.0.5"}, tcp("10.0.0.6:1"), proxyproto.REJECT},
		{"not TCP", []string{"0.0.0.0/0", "::/0"}, &net.UnixAddr{Name: "@lb", Net: "unix"}, proxyproto.REJECT},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := mux.ProxyPolicy(tc.cidrs)
			if err != nil {
				t.Fatal(err)
			}
			if got := pol(tc.peer); got != tc.want {
				t.Fatalf("ProxyPolicy(%q)(%v) = %v, want %v", tc.cidrs, tc.peer, got, tc.want)
			}
		})
	}
}

func TestProxyPolicyErrors(t *testing.T) {
	_, err := mux.ProxyPolicy([]string{"10.0.0.0/8", "lb.example.com", "10.0.0.0/33", "", "fe80::1%eth0/64"})
	if err == nil {
		t.Fatal("bad entries accepted")
	}
	for _, want := range []string{`"lb.example.com"`, `"10.0.0.0/33"`, `""`, `"fe80::1%eth0/64"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), `"10.0.0.0/8"`) {
		t.Errorf("error names the valid entry: %v", err)
	}
}

// splitConn sends header+hello in two writes, cut at offset, with a pause
// between them so they are two segments and two reads on the server.
type splitConn struct {
	net.Conn
	header []byte
	cut    int
	done   bool
	hello  int
	// records, when set, re-frames the hello into TLS records of at most
	// this many bytes before it is cut, as some stacks send it.
	records int
	// pause between the two writes (default 3 ms).
	pause time.Duration
}

func (c *splitConn) Write(p []byte) (int, error) {
	if c.done {
		return c.Conn.Write(p)
	}
	c.done = true
	c.hello = len(p)
	hello := p
	if c.records > 0 && len(p) > 5 && p[0] == 0x16 {
		n := int(p[3])<<8 | int(p[4])
		hello = nil
		for body := p[5 : 5+n]; len(body) > 0; {
			k := min(c.records, len(body))
			hello = append(append(hello, 0x16, p[1], p[2], byte(k>>8), byte(k)), body[:k]...)
			body = body[k:]
		}
		hello = append(hello, p[5+n:]...)
	}
	all := append(append([]byte{}, c.header...), hello...)
	cut := min(c.cut, len(all)-1)
	if _, err := c.Conn.Write(all[:cut]); err != nil {
		return 0, err
	}
	pause := c.pause
	if pause == 0 {
		pause = 3 * time.Millisecond
	}
	time.Sleep(pause)
	if _, err := c.Conn.Write(all[cut:]); err != nil {
		return 0, err
	}
	return len(p), nil
}

// TestProxyHeaderSplitAnywhere: wherever the stream of PROXY header +
// ClientHello is cut into segments (inside the header, at its end, at
// go-proxyproto's 256-byte read-ahead, inside the hello), nexmux reads the
// header, routes on the hello and completes the handshake; no byte is lost
// or reordered.
func TestProxyHeaderSplitAnywhere(t *testing.T) {
	m := startMux(t, []string{"127.0.0.1/32"}, "", 0)
	src := netip.MustParseAddrPort("203.0.113.7:5555")
	v2 := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(src), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(m.addr)))
	v2tlv := *v2
	if err := v2tlv.SetTLVs([]proxyproto.TLV{
		{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("team-a.nexmux.test")},
		{Type: proxyproto.PP2_TYPE_MIN_CUSTOM, Value: bytes.Repeat([]byte{0xAB}, 300)},
	}); err != nil {
		t.Fatal(err)
	}
	format := func(h *proxyproto.Header) []byte {
		b, err := h.Format()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	headers := map[string][]byte{
		"v1":      []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n"),
		"v2":      format(v2),
		"v2-tlvs": format(&v2tlv),
	}
	for name, hdr := range headers {
		hl := len(hdr)
		cuts := []int{1, 5, 12, 13, 15, 16, hl - 1, hl, hl + 1, hl + 5, 255, 256, 257, 300, 512, hl + 1448, hl + 1600}
		for _, cut := range cuts {
			t.Run(fmt.Sprintf("%s/cut-%d", name, cut), func(t *testing.T) {
				getThroughSplit(t, m, splitConn{header: hdr, cut: cut})
			})
		}
	}
	if strings.Contains(m.logs.String(), "connection refused") {
		t.Fatalf("refusals:\n%s", m.logs.String())
	}
}

// TestProxyHeaderSplitAtEveryByte: a balancer may send its PROXY header in
// two segments (a proxy chain, a writer that flushes per field, a small
// MSS), v1 text as much as v2: wherever the header is cut, nexmux waits
// for the rest within the handshake timeout and routes the client it names.
func TestProxyHeaderSplitAtEveryByte(t *testing.T) {
	m := startMux(t, []string{"127.0.0.1/32"}, "", 0)
	dst := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(m.addr))
	v2 := func(src string, tlvs ...proxyproto.TLV) []byte {
		h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), dst)
		if src[0] == '[' {
			h.DestinationAddr = &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443}
		}
		if err := h.SetTLVs(tlvs); err != nil {
			t.Fatal(err)
		}
		b, err := h.Format()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name, client string
		header       []byte
	}{
		{"v1 TCP4", "203.0.113.7:5555", []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n")},
		{"v1 TCP6", "[2001:db8::7]:5555", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n")},
		{"v2 TCP4", "203.0.113.7:5555", v2("203.0.113.7:5555")},
		{"v2 TCP6", "[2001:db8::7]:5555", v2("[2001:db8::7]:5555")},
		{"v2 TCP4 TLV", "203.0.113.7:5555", v2("203.0.113.7:5555", proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("team-a.nexmux.test")})},
	} {
		for cut := 1; cut < len(tc.header); cut++ {
			t.Run(fmt.Sprintf("%s/cut-%d", tc.name, cut), func(t *testing.T) {
				getThroughSplitAs(t, m, splitConn{header: tc.header, cut: cut, pause: 10 * time.Millisecond}, tc.client)
			})
		}
	}
	if strings.Contains(m.logs.String(), "connection refused") {
		t.Fatalf("refusals:\n%s", m.logs.String())
	}
}

// TestProxyHeaderIncomplete: waiting for the rest of a header is bounded.
// A v1 line that never completes is refused at the handshake timeout, not
// before (the sender might still finish it) nor after; garbage, a line too
// long to be one, and a partial line the sender closed are refused as soon
// as they are seen, never at the timeout, with go-proxyproto's reason.
func TestProxyHeaderIncomplete(t *testing.T) {
	const timeout = 1500 * time.Millisecond
	t.Run("never completes", func(t *testing.T) {
		m := startMuxWith(t, muxConfig{proxyFrom: []string{"127.0.0.1/32"}, handshakeTimeout: timeout})
		for _, part := range []string{"P", "PROXY", "PROXY TCP4 203.0.113.7", "PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r"} {
			t.Run(part, func(t *testing.T) {
				start := time.Now()
				c, err := net.Dial("tcp", m.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := io.WriteString(c, part); err != nil {
					t.Fatal(err)
				}
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
					t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
				}
				// The server's deadline began after the dial began: it
				// cannot have passed before this much time.
				if d := time.Since(start); d < timeout {
					t.Fatalf("partial header refused after %v, before the %v handshake timeout", d, timeout)
				}
				m.waitRefusal(t, c.LocalAddr().String(), mux.ReasonProxyHeader)
				// go-proxyproto's own error then is "signature not
				// present": the line says what happened.
				for _, line := range strings.Split(m.logs.String(), "\n") {
					if strings.Contains(line, "client="+c.LocalAddr().String()) && !strings.Contains(line, "PROXY header not complete before the handshake timeout") {
						t.Fatalf("the refusal does not say the header was cut short by the timeout: %s", line)
					}
				}
			})
		}
	})
	// A handshake timeout no test waits for: these are refused at once.
	m := startMuxWith(t, muxConfig{proxyFrom: []string{"127.0.0.1/32"}, handshakeTimeout: time.Hour})
	for _, tc := range []struct {
		name, first, second string
		closeAfter          bool
		want                string // go-proxyproto's error
	}{
		{"bad address", "PROXY TCP4 not-an-address", " 127.0.0.1 5555 443\r\n", false, "invalid address"},
		{"too long", "PROXY TCP4 " + strings.Repeat("1", 60), strings.Repeat("2", 60), false, "version 1 header must be 107 bytes or less"},
		{"binary byte", "PROXY TCP4 203.0.113.7", "\x00\x01", false, "can't read version 1 header"},
		{"CR inside", "PROXY TCP4 203.0.113.7\r", "x", false, "can't read version 1 header"},
		{"closed partway", "PROXY TCP4 203.0.113.7", "", true, "can't read version 1 header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", m.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.first); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
			if tc.second != "" {
				if _, err := io.WriteString(c, tc.second); err != nil {
					t.Fatal(err)
				}
			}
			if tc.closeAfter {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("not refused: still open after 30 s")
			}
			m.waitRefusal(t, c.LocalAddr().String(), mux.ReasonProxyHeader)
			if !strings.Contains(m.logs.String(), "client="+c.LocalAddr().String()+" reason=proxy_header err=\"proxyproto: "+tc.want) {
				t.Fatalf("refusal does not say %q:\n%s", tc.want, m.logs.String())
			}
		})
	}
}

// TestProxyHeaderThenHelloInManyRecords: the PROXY header and a
// post-quantum ClientHello split into several TLS records, in the same
// first segment and cut across segments inside the records: one reader
// must carry the header's read-ahead into the record reassembly with no
// byte lost (pitfalls 1 and 2 together).
func TestProxyHeaderThenHelloInManyRecords(t *testing.T) {
	m := startMux(t, []string{"127.0.0.1/32"}, "", 0)
	src := netip.MustParseAddrPort("203.0.113.7:5555")
	v2 := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(src), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(m.addr)))
	v2b, err := v2.Format()
	if err != nil {
		t.Fatal(err)
	}
	headers := map[string][]byte{
		"v1": []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n"),
		"v2": v2b,
	}
	for name, hdr := range headers {
		for _, records := range []int{1, 5, 100, 700} {
			// One segment (the cut past the end), and cuts inside the
			// first records, at go-proxyproto's 256-byte read-ahead, and
			// past one full-size segment.
			for _, cut := range []int{1 << 20, len(hdr) + 3, len(hdr) + 7, 256, 257, 1448, 1500} {
				t.Run(fmt.Sprintf("%s/records-%d/cut-%d", name, records, cut), func(t *testing.T) {
					getThroughSplit(t, m, splitConn{header: hdr, cut: cut, records: records})
				})
			}
		}
	}
	if strings.Contains(m.logs.String(), "connection refused") {
		t.Fatalf("refusals:\n%s", m.logs.String())
	}
}

// A trusted balancer's header that names no IP client (AF_UNIX: the
// balancer took the client on a local socket) leaves the balancer as the
// client, as LOCAL and UNKNOWN do: never an invalid address, which logs
// showed as "invalid AddrPort" and which every such client shared for
// --max-conns-per-client, with --max-requests-per-client skipped.
func TestProxyHeaderWithoutIPClient(t *testing.T) {
	m := startMux(t, []string{"127.0.0.1/32"}, "", 0)
	unix := make([]byte, 216)
	copy(unix, "/run/lb/client.sock")
	copy(unix[108:], "/run/lb/front.sock")
	headers := map[string][]byte{
		"v2 unix":    append(append(append([]byte{}, proxyproto.SIGV2...), 0x21, 0x31, 0, 216), unix...),
		"v2 local":   append(append([]byte{}, proxyproto.SIGV2...), 0x20, 0x00, 0, 0),
		"v1 unknown": []byte("PROXY UNKNOWN\r\n"),
	}
	for name, hdr := range headers {
		t.Run(name, func(t *testing.T) {
			var local string
			body := getTeamA(t, m, false, func(c net.Conn) (net.Conn, error) {
				local = c.LocalAddr().String()
				_, err := c.Write(hdr)
				return c, err
			})
			if want := local + " team-a.nexmux.test true"; body != want {
				t.Fatalf("got %q, want %q (the balancer as the client)", body, want)
			}
		})
		// A passthrough backend's PROXY header says the same, from the
		// balancer to nexmux's listener.
		t.Run(name+"/passthrough", func(t *testing.T) {
			be, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			pt := startMux(t, []string{"127.0.0.1/32"}, be.Addr().String(), 2)
			c, err := net.Dial("tcp", pt.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(append(append([]byte{}, hdr...), testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"})...)); err != nil {
				t.Fatal(err)
			}
			bc, err := be.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer bc.Close()
			_ = bc.SetDeadline(time.Now().Add(10 * time.Second))
			h, err := proxyproto.Read(bufio.NewReader(bc))
			if err != nil {
				t.Fatal(err)
			}
			if h.Command != proxyproto.PROXY || h.SourceAddr.String() != c.LocalAddr().String() || h.DestinationAddr.String() != pt.addr {
				t.Fatalf("backend's header: %v from %v to %v; want PROXY from %s to %s", h.Command, h.SourceAddr, h.DestinationAddr, c.LocalAddr(), pt.addr)
			}
		})
	}
}

// A balancer's health checks (PROXY v2 LOCAL: the balancer's own
// connections, relayed for no client) hold no --max-conns-per-client slot
// of the balancer's address, which the clients its headers name no IP for
// share: checks in flight, or kept open between checks, must not refuse
// those clients, nor those clients the checks (the balancer would take
// nexmux out of service).
func TestHealthChecksHoldNoClientSlot(t *testing.T) {
	m := startMuxWith(t, muxConfig{proxyFrom: []string{"127.0.0.1/32"}, maxConnsPerClient: 2})
	unix := make([]byte, 216)
	copy(unix, "/run/lb/client.sock")
	copy(unix[108:], "/run/lb/front.sock")
	headers := map[string][]byte{
		"health check": append(append([]byte{}, proxyproto.SIGV2...), 0x20, 0x00, 0, 0),
		"unix client":  append(append(append([]byte{}, proxyproto.SIGV2...), 0x21, 0x31, 0, 216), unix...),
	}
	// open makes a TLS connection with the header, keeps it open until
	// the (sub)test ends, and makes a request on it.
	open := func(t *testing.T, kind string) error { return requestAfterHeader(t, m, headers[kind]) }
	for _, order := range [][2]string{{"health check", "unix client"}, {"unix client", "health check"}} {
		t.Run(order[0]+"s first", func(t *testing.T) {
			for i := range 2 {
				if err := open(t, order[0]); err != nil {
					t.Fatalf("%s %d: %v", order[0], i+1, err)
				}
			}
			if err := open(t, order[1]); err != nil {
				t.Fatalf("%s beside two %ss: %v", order[1], order[0], err)
			}
		})
		// The subtest's connections close: their slots come back.
		eventually(t, func() (bool, string) {
			_, slots := m.srv.OpenCounts()
			return slots == 0, fmt.Sprintf("%d client slots held", slots)
		})
	}
}

// v2 LOCAL is not only a health check: HAProxy sends it for every client
// it relays whose address is not IP (a unix-socket or abns frontend). So
// LOCAL connections hold slots of a pool of their own, the balancer's,
// --max-conns-per-client of them: apart from the clients the balancer
// names (checks and those clients never refuse each other), but bounded,
// so clients relayed as LOCAL cannot take every --max-conns place.
func TestLocalConnectionsBoundedPerBalancer(t *testing.T) {
	m := startMuxWith(t, muxConfig{proxyFrom: []string{"127.0.0.1/32"}, maxConnsPerClient: 2})
	local := append(append([]byte{}, proxyproto.SIGV2...), 0x20, 0x00, 0, 0)
	open := func() error { return requestAfterHeader(t, m, local) }
	for i := range 2 {
		if err := open(); err != nil {
			t.Fatalf("LOCAL connection %d: %v", i+1, err)
		}
	}
	if err := open(); err == nil {
		t.Fatal("a third LOCAL connection was served beside two, over --max-conns-per-client 2")
	}
	if n := m.refused.get(mux.ReasonPerClient); n != 1 {
		t.Fatalf("%d refused as %s, want 1", n, mux.ReasonPerClient)
	}
	if _, slots := m.srv.OpenCounts(); slots != 2 {
		t.Fatalf("%d slots held by two LOCAL connections, want 2", slots)
	}
}

// A v1 "PROXY UNKNOWN" header is a relayed client the balancer could not
// name (a client on a unix socket, say), not a health check: go-proxyproto
// reads it as a LOCAL command, but only v2 LOCAL is the balancer's own
// connection. Such clients share the balancer's --max-conns-per-client
// slots, as the README says, rather than escaping the limit.
func TestV1UnknownClientsHoldClientSlots(t *testing.T) {
	m := startMuxWith(t, muxConfig{proxyFrom: []string{"127.0.0.1/32"}, maxConnsPerClient: 2})
	unix := make([]byte, 216)
	copy(unix, "/run/lb/client.sock")
	copy(unix[108:], "/run/lb/front.sock")
	headers := map[string][]byte{
		"UNKNOWN": []byte("PROXY UNKNOWN\r\n"),
		"unix":    append(append(append([]byte{}, proxyproto.SIGV2...), 0x21, 0x31, 0, 216), unix...),
	}
	open := func(kind string) error { return requestAfterHeader(t, m, headers[kind]) }
	// An UNKNOWN client and an AF_UNIX one share the balancer's address:
	// a second UNKNOWN client is one too many (not a LOCAL connection of
	// the balancer's own pool).
	for _, kind := range []string{"UNKNOWN", "unix"} {
		if err := open(kind); err != nil {
			t.Fatalf("%s client: %v", kind, err)
		}
	}
	if err := open("UNKNOWN"); err == nil {
		t.Fatal("an UNKNOWN client was served beside an UNKNOWN and a unix client, over --max-conns-per-client 2")
	}
	if n := m.refused.get(mux.ReasonPerClient); n != 1 {
		t.Fatalf("%d refused as %s, want 1", n, mux.ReasonPerClient)
	}
}

// TestPassthroughKeepsBytesPastTheHello: bytes the client sends right
// behind its ClientHello (here in the same segment as the PROXY header and
// the hello, so they sit in the PROXY reader's read-ahead) reach the
// passthrough backend once, in order, after the hello; with PROXY out, the
// backend's header carries the inbound client address.
func TestPassthroughKeepsBytesPastTheHello(t *testing.T) {
	for _, tc := range []struct {
		name      string
		proxyFrom []string
		inbound   []byte
		ppOut     byte
		client    string
	}{
		{"plain", nil, nil, 0, ""},
		{"proxy-in", []string{"127.0.0.0/8"}, []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n"), 0, ""},
		{"proxy-in-out-v2", []string{"127.0.0.0/8"}, []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n"), 2, "203.0.113.7:5555"},
		{"proxy-out-v1", nil, nil, 1, "self"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			got := make(chan []byte, 1)
			go func() {
				c, err := be.Accept()
				if err != nil {
					got <- nil
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				b, _ := io.ReadAll(c) // until nexmux passes the client's FIN on
				_, _ = c.Write([]byte("bye"))
				got <- b
			}()
			m := startMux(t, tc.proxyFrom, be.Addr().String(), tc.ppOut)

			// A small hello (TLS 1.2, one curve) so header+hello+extra
			// fit in go-proxyproto's 256-byte read-ahead.
			hello := testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test", MaxVersion: tls.VersionTLS12,
				CurvePreferences: []tls.CurveID{tls.X25519}, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}})
			extra := bytes.Repeat([]byte("EXTRA-BYTES-AFTER-THE-HELLO/"), 5)
			// go-proxyproto reads ahead 256 bytes: the cut must fall
			// inside extra, so part of it sits in the PROXY reader's
			// buffer and the rest in the socket.
			if n := len(tc.inbound) + len(hello); tc.inbound != nil && (n >= 256 || n+len(extra) <= 256) {
				t.Fatalf("header+hello = %d bytes: the 256-byte read-ahead does not end inside the extra bytes", n)
			}
			c, err := net.Dial("tcp", m.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := c.Write(append(append(append([]byte{}, tc.inbound...), hello...), extra...)); err != nil {
				t.Fatal(err)
			}
			_ = c.(*net.TCPConn).CloseWrite()
			reply, err := io.ReadAll(c)
			if err != nil || string(reply) != "bye" {
				t.Fatalf("reply %q %v", reply, err)
			}
			b := <-got
			br := bufio.NewReader(bytes.NewReader(b))
			if tc.ppOut != 0 {
				h, err := proxyproto.Read(br)
				if err != nil {
					t.Fatalf("backend: no PROXY header: %v (%q)", err, b)
				}
				want := tc.client
				if want == "self" {
					want = c.LocalAddr().String()
				}
				if h.Version != tc.ppOut || h.SourceAddr.String() != want {
					t.Fatalf("backend header v%d from %s, want v%d from %s", h.Version, h.SourceAddr, tc.ppOut, want)
				}
			}
			rest, _ := io.ReadAll(br)
			if want := append(append([]byte{}, hello...), extra...); !bytes.Equal(rest, want) {
				t.Fatalf("backend got %d bytes %q…, want the %d-byte hello and %q", len(rest), rest[:min(len(rest), 16)], len(hello), extra)
			}
		})
	}
}

// TestProxyHeaderRefusals: the reasons a PROXY-related refusal is logged.
func TestProxyHeaderRefusals(t *testing.T) {
	trusted := startMux(t, []string{"127.0.0.0/8"}, "", 0)
	untrusted := startMux(t, []string{"192.0.2.0/24"}, "", 0)
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "team-a.nexmux.test"})
	for _, tc := range []struct {
		name string
		m    *muxServer
		send []byte
		want string
	}{
		{"trusted, no header", trusted, hello, mux.ReasonProxyHeader},
		{"trusted, HTTP instead of a header", trusted, []byte("GET / HTTP/1.1\r\n\r\n"), mux.ReasonProxyHeader},
		{"trusted, one byte, no header", trusted, []byte("G"), mux.ReasonProxyHeader},
		{"untrusted, v1 header", untrusted, append([]byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n"), hello...), mux.ReasonProxyHeader},
		{"untrusted, v2 header", untrusted, append(append([]byte{}, proxyproto.SIGV2...), 0x21, 0x11, 0, 12, 203, 0, 113, 7, 127, 0, 0, 1, 0x15, 0xb3, 1, 187), mux.ReasonProxyHeader},
		{"untrusted, no header, not TLS", untrusted, []byte("SSH-2.0-x\r\n"), mux.ReasonNotTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", tc.m.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("connection not closed")
			}
			if len(got) != 0 {
				t.Fatalf("got %q back", got)
			}
			tc.m.waitRefusal(t, c.LocalAddr().String(), tc.want)
		})
	}
}

// requestAfterHeader opens a connection to m, sends header, then a TLS
// request for team-a, and keeps the connection open until t ends.
func requestAfterHeader(t *testing.T, m *muxServer, header []byte) error {
	t.Helper()
	c, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(header); err != nil {
		return err
	}
	tc := tls.Client(c, m.tlsConfig("team-a.nexmux.test"))
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return err
	}
	if _, err := io.WriteString(tc, "GET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// getThroughSplit GETs team-a through m over a connection written as split
// says (its header, cut and records), and checks m saw the header's client
// and a ClientHello larger than one segment.
func getThroughSplit(t *testing.T, m *muxServer, split splitConn) {
	t.Helper()
	getThroughSplitAs(t, m, split, "203.0.113.7:5555")
}

// getThroughSplitAs is getThroughSplit for a header naming client.
func getThroughSplitAs(t *testing.T, m *muxServer, split splitConn, client string) {
	t.Helper()
	var sc *splitConn
	body := getTeamA(t, m, true, func(c net.Conn) (net.Conn, error) {
		sc = &splitConn{Conn: c, header: split.header, cut: split.cut, records: split.records, pause: split.pause}
		return sc, nil
	})
	if want := client + " team-a.nexmux.test true"; body != want {
		t.Fatalf("got %q, want %q", body, want)
	}
	if sc.hello <= 1448 {
		t.Fatalf("ClientHello of %d bytes; want more than one segment", sc.hello)
	}
}

// getTeamA GETs team-a's root through m on one new connection, which wrap
// takes over once dialled (to write a PROXY header first, or split the
// bytes), and returns the body.
func getTeamA(t *testing.T, m *muxServer, h2 bool, wrap func(net.Conn) (net.Conn, error)) string {
	t.Helper()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", m.addr)
			if err != nil {
				return nil, err
			}
			return wrap(c)
		},
		TLSClientConfig:   &tls.Config{RootCAs: m.ca.Pool()},
		ForceAttemptHTTP2: h2,
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get("https://team-a.nexmux.test/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(body)
}

// A listener --bind-ports opens (ServePort) reads PROXY headers as
// --listen does: a --proxy-protocol-from peer's header names the client,
// and the same peer without one is refused.
func TestBindPortListenerTakesProxyHeaders(t *testing.T) {
	m := startMuxWith(t, muxConfig{proxyFrom: []string{"127.0.0.0/8"}, ports: []string{"8082=team-p"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.goServe(func() error { return m.srv.ServePort(ln, 8082) })
	dial := func(header string) (net.Conn, string) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, header+"GET /v2/ HTTP/1.1\r\nHost: nexus:8082\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(c)
		return c, string(b)
	}
	if _, got := dial("PROXY TCP4 203.0.113.9 127.0.0.1 5555 8082\r\n"); !strings.Contains(got, "203.0.113.9:5555") || !strings.Contains(got, "X-Route: :8082") {
		t.Errorf("with a header: %q, want the port route serving client 203.0.113.9:5555", got)
	}
	c, got := dial("")
	if strings.Contains(got, "200 OK") {
		t.Errorf("a trusted peer without a header was served: %q", got)
	}
	m.waitRefusal(t, c.LocalAddr().String(), mux.ReasonProxyHeader)
}
