package mux_test

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/crypto/cryptobyte"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/mux"
)

// tls13Hello builds a TLS 1.3 ClientHello record for name with the given
// random and session id; keyShare nil offers no key share (so a server
// must answer with a HelloRetryRequest for X25519).
func tls13Hello(name string, random, sessionID, keyShare []byte) []byte {
	var msg cryptobyte.Builder
	msg.AddUint8(1) // client_hello
	msg.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(0x0303)
		b.AddBytes(random)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(sessionID) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x1301) })
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			ext := func(typ uint16, f func(b *cryptobyte.Builder)) {
				b.AddUint16(typ)
				b.AddUint16LengthPrefixed(f)
			}
			ext(0, func(b *cryptobyte.Builder) { // server_name
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint8(0)
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(name)) })
				})
			})
			ext(10, func(b *cryptobyte.Builder) { // supported_groups: X25519
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x001d) })
			})
			ext(13, func(b *cryptobyte.Builder) { // signature_algorithms
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16(0x0403)
					b.AddUint16(0x0804)
				})
			})
			ext(43, func(b *cryptobyte.Builder) { // supported_versions: TLS 1.3
				b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x0304) })
			})
			ext(51, func(b *cryptobyte.Builder) { // key_share
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					if keyShare != nil {
						b.AddUint16(0x001d)
						b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(keyShare) })
					}
				})
			})
		})
	})
	body := msg.BytesOrPanic()
	// After a HelloRetryRequest the record version is TLS 1.2's, as
	// crypto/tls expects once it has chosen a version.
	vers := byte(1)
	if keyShare != nil {
		vers = 3
	}
	return append([]byte{0x16, 3, vers, byte(len(body) >> 8), byte(len(body))}, body...)
}

// readRecord reads one TLS record (header and payload).
func readRecord(t *testing.T, c net.Conn) []byte {
	t.Helper()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatalf("reading a record header: %v", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("reading a record body: %v", err)
	}
	return append(hdr, body...)
}

// The route (and certificate) is chosen from the first ClientHello: a
// second one after a HelloRetryRequest that names another server must
// end the handshake (illegal_parameter, RFC 8446 Section 4.1.2), never be
// served as the other name.
func TestHelloRetryWithAnotherServerNameRefused(t *testing.T) {
	m := startMuxWith(t, muxConfig{routes: []string{"team-b.nexmux.test=team-b"}})
	for _, tc := range []struct {
		second string
		alert  bool
	}{
		{"team-a.nexmux.test", false}, // the control: the same name goes on
		{"team-b.nexmux.test", true},
		{"pt.nexmux.test", true},
	} {
		t.Run(tc.second, func(t *testing.T) {
			c, err := net.Dial("tcp", m.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			random, sid := make([]byte, 32), make([]byte, 32)
			_, _ = rand.Read(random)
			_, _ = rand.Read(sid)
			if _, err := c.Write(tls13Hello("team-a.nexmux.test", random, sid, nil)); err != nil {
				t.Fatal(err)
			}
			hrr := readRecord(t, c)
			// A HelloRetryRequest is a ServerHello with RFC 8446's fixed random.
			hrrRandom := []byte{0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91}
			if hrr[0] != 0x16 || hrr[5] != 2 || !bytes.Equal(hrr[11:11+len(hrrRandom)], hrrRandom) {
				t.Fatalf("want a HelloRetryRequest, got % x", hrr[:min(len(hrr), 16)])
			}
			key, err := ecdh.X25519().GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(tls13Hello(tc.second, random, sid, key.PublicKey().Bytes())); err != nil {
				t.Fatal(err)
			}
			rec := readRecord(t, c)
			for rec[0] == 0x14 { // the server's compatibility ChangeCipherSpec
				rec = readRecord(t, c)
			}
			if !tc.alert {
				if rec[0] != 0x16 || rec[5] != 2 {
					t.Fatalf("same name again: want a ServerHello, got % x", rec[:min(len(rec), 8)])
				}
				return
			}
			if rec[0] != 0x15 || len(rec) < 7 || rec[6] != 47 {
				t.Fatalf("second hello for %s: want an illegal_parameter alert, got % x", tc.second, rec[:min(len(rec), 8)])
			}
		})
	}
}

// v2Header is a PROXY v2 header: ver_cmd, fam, then body (its length is
// written as given by n, or len(body) when n < 0).
func v2Header(verCmd, fam byte, n int, body ...byte) []byte {
	if n < 0 {
		n = len(body)
	}
	h := append(append([]byte{}, proxyproto.SIGV2...), verCmd, fam, byte(n>>8), byte(n))
	return append(h, body...)
}

// withCRC returns h, a v2 header ending in a CRC32C TLV, with the TLV's
// value set to the checksum of h (plus flip, to make it wrong).
func withCRC(h []byte, flip uint32) []byte {
	h = append([]byte{}, h...)
	clear(h[len(h)-4:])
	binary.BigEndian.PutUint32(h[len(h)-4:], crc32.Checksum(h, crc32.MakeTable(crc32.Castagnoli))^flip)
	return h
}

// Header variants a trusted balancer (or a hostile network between it and
// nexmux) may send: those read as valid pass exactly the bytes after them
// to a passthrough backend, with the client they name (or the balancer,
// for one that names no IP client) in the header sent on; the others are
// refused as proxy_header, at once, without a byte reaching a backend.
func TestInboundProxyHeaderVariants(t *testing.T) {
	tcp4 := []byte{203, 0, 113, 7, 127, 0, 0, 1, 0x15, 0xb3, 1, 187}
	tcp6 := append(append(net.ParseIP("2001:db8::7").To16(), net.ParseIP("::1").To16()...), 0x15, 0xb3, 1, 187)
	unix := make([]byte, 216) // source and destination, 108 bytes each
	copy(unix, "/run/lb.sock")
	copy(unix[108:], "/run/front.sock")
	authority := []byte{byte(proxyproto.PP2_TYPE_AUTHORITY), 0, 9, 'e', 'v', 'i', 'l', '.', 't', 'e', 's', 't'}
	noop := []byte{byte(proxyproto.PP2_TYPE_NOOP), 0, 3, 0, 0, 0}
	crc := []byte{byte(proxyproto.PP2_TYPE_CRC32C), 0, 4, 0, 0, 0, 0}
	// A header checksummed for 203.0.113.7, then changed to name .9.
	forged := withCRC(v2Header(0x21, 0x11, -1, append(append([]byte{}, tcp4...), crc...)...), 0)
	forged[16+3] = 9
	// An AWS NLB header with its CRC32C, VPC endpoint and NOOP TLVs, the
	// bytes of AWS's own compatibility test (elastic-load-balancing-tools,
	// Compatibility_AwsNetworkLoadBalancerTest.java).
	awsNLB := append([]byte{0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x54,
		0xac, 0x1f, 0x07, 0x71, 0xac, 0x1f, 0x0a, 0x1f, 0xc8, 0xf2, 0x00, 0x50,
		0x03, 0x00, 0x04, 0xe8, 0xd6, 0x89, 0x2d,
		0xea, 0x00, 0x17, 0x01, 0x76, 0x70, 0x63, 0x65, 0x2d, 0x30, 0x38, 0x64, 0x32, 0x62, 0x66, 0x31, 0x35, 0x66, 0x61, 0x63, 0x35, 0x30, 0x30, 0x31, 0x63, 0x39,
		0x04, 0x00, 0x24}, make([]byte, 36)...)
	awsForged := append([]byte{}, awsNLB...)
	awsForged[44]++ // the VPC endpoint id
	// AWS NLB's health checks: LOCAL, family TCPv4, and no address block,
	// its 84 bytes TLVs alone (CRC32C, then NOOP padding; the bytes of
	// kubernetes/kubernetes#57250). go-proxyproto reads the first 12 as
	// addresses, the TLVs after them out of step. The same with a TLV
	// between them that is no padding, and one damaged: a LOCAL header is
	// discarded, never checked (the spec: the receiver must accept it).
	nlbCheck := v2Header(0x20, 0x11, -1, append([]byte{0x03, 0x00, 0x04, 0xbc, 0xe5, 0x95, 0x1f, 0x04, 0x00, 0x4a}, make([]byte, 74)...)...)
	localTLVs := v2Header(0x20, 0x11, -1, append(append(append([]byte{0x03, 0x00, 0x04, 0xbc, 0xe5, 0x95, 0x1f}, awsNLB[35:61]...), 0x04, 0x00, 0x20), make([]byte, 32)...)...)
	const balancer = "balancer"
	for _, tc := range []struct {
		name   string
		header []byte
		client string // "" refused
	}{
		{"v1 tcp4", []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n"), "203.0.113.7:5555"},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 ::1 5555 443\r\n"), "[2001:db8::7]:5555"},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), balancer},
		{"v1 unknown with addresses", []byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), balancer},
		{"v1 two spaces", []byte("PROXY  TCP4 203.0.113.7 127.0.0.1 5555 443\r\n"), ""},
		{"v1 LF only", []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\n"), ""},
		{"v1 lower case", []byte("proxy TCP4 203.0.113.7 127.0.0.1 5555 443\r\n"), ""},
		{"v1 tcp4 with an IPv6 address", []byte("PROXY TCP4 2001:db8::7 127.0.0.1 5555 443\r\n"), ""},
		{"v1 port out of range", []byte("PROXY TCP4 203.0.113.7 127.0.0.1 65536 443\r\n"), ""},
		{"v1 over 107 bytes", []byte("PROXY UNKNOWN " + strings.Repeat("x", 100) + "\r\n"), ""},
		{"v2 tcp4", v2Header(0x21, 0x11, -1, tcp4...), "203.0.113.7:5555"},
		{"v2 tcp6", v2Header(0x21, 0x21, -1, tcp6...), "[2001:db8::7]:5555"},
		// A datagram flow is not this stream: refused, not passed on as
		// a TCP client (socks5's TestBalancersUDPHeaderRefused is the
		// same rule there); LOCAL's family is not read.
		{"v2 udp4", v2Header(0x21, 0x12, -1, tcp4...), ""},
		{"v2 udp6", v2Header(0x21, 0x22, -1, tcp6...), ""},
		{"v2 unix datagram", v2Header(0x21, 0x32, -1, unix...), ""},
		{"v2 local udp4", v2Header(0x20, 0x12, -1, tcp4...), balancer},
		// A CRC32C TLV (HAProxy's proxy-v2-options crc32c) must match.
		{"v2 tcp4, CRC32C", withCRC(v2Header(0x21, 0x11, -1, append(append(append([]byte{}, tcp4...), authority...), crc...)...), 0), "203.0.113.7:5555"},
		{"v2 tcp6, CRC32C", withCRC(v2Header(0x21, 0x21, -1, append(append([]byte{}, tcp6...), crc...)...), 0), "[2001:db8::7]:5555"},
		{"v2 unix, CRC32C", withCRC(v2Header(0x21, 0x31, -1, append(append([]byte{}, unix...), crc...)...), 0), balancer},
		{"v2 local, CRC32C", withCRC(v2Header(0x20, 0x00, -1, crc...), 0), balancer},
		{"v2 tcp4, bad CRC32C", withCRC(v2Header(0x21, 0x11, -1, append(append([]byte{}, tcp4...), crc...)...), 1), ""},
		{"v2 tcp4, CRC32C of another client", forged, ""},
		{"v2 AWS NLB", awsNLB, "172.31.7.113:51442"},
		{"v2 AWS NLB, endpoint id changed", awsForged, ""},
		{"v2 local, bad CRC32C", withCRC(v2Header(0x20, 0x00, -1, crc...), 0x80000000), balancer},
		{"v2 local, AWS NLB health check", nlbCheck, balancer},
		{"v2 local, TLVs where an address block would be", localTLVs, balancer},
		{"v2 local, truncated TLV", v2Header(0x20, 0x00, -1, 0x04, 0), balancer},
		{"v2 tcp4, 3-byte CRC32C", v2Header(0x21, 0x11, -1, append(append([]byte{}, tcp4...), byte(proxyproto.PP2_TYPE_CRC32C), 0, 3, 1, 2, 3)...), ""},
		{"v2 tcp4 with TLVs", v2Header(0x21, 0x11, -1, append(append(append([]byte{}, tcp4...), noop...), authority...)...), "203.0.113.7:5555"},
		{"v2 local with addresses", v2Header(0x20, 0x11, -1, tcp4...), balancer},
		{"v2 local, no addresses", v2Header(0x20, 0x00, 0), balancer},
		{"v2 unix", v2Header(0x21, 0x31, -1, unix...), balancer},
		{"v2 tcp4 short", v2Header(0x21, 0x11, -1, tcp4[:8]...), ""},
		// TLVs are walked for a CRC32C one: a vector that does not
		// parse is refused, as HAProxy refuses it.
		{"v2 tcp4, truncated TLV", v2Header(0x21, 0x11, -1, append(append([]byte{}, tcp4...), 0x04, 0)...), ""},
		{"v2 version 3", v2Header(0x31, 0x11, -1, tcp4...), ""},
		{"v2 command 2", v2Header(0x22, 0x11, -1, tcp4...), ""},
		{"v2 family 0x51", v2Header(0x21, 0x51, -1, tcp4...), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			// A header refused where it should pass fails the test
			// rather than wait here for ever.
			_ = be.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
			got := make(chan []byte, 1)
			go func() {
				c, err := be.Accept()
				if err != nil {
					got <- nil
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				b, _ := io.ReadAll(c)
				got <- b
			}()
			m := startMuxWith(t, muxConfig{proxyFrom: []string{"127.0.0.0/8"}, passthrough: be.Addr().String(), ppOut: 2, handshakeTimeout: 3 * time.Second})
			hello := testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"})
			tail := []byte("after the hello")
			c, err := net.Dial("tcp", m.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			if _, err := c.Write(append(append(append([]byte{}, tc.header...), hello...), tail...)); err != nil {
				t.Fatal(err)
			}
			_ = c.(*net.TCPConn).CloseWrite()
			reply, _ := io.ReadAll(c)
			if tc.client == "" {
				if len(reply) != 0 {
					t.Fatalf("refused header: got %q back", reply)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Fatalf("refused after %v: at the handshake timeout, not at once", d)
				}
				m.waitRefusal(t, c.LocalAddr().String(), mux.ReasonProxyHeader)
				be.Close()
				if b := <-got; b != nil {
					t.Fatalf("a backend was dialled for a refused header: %q", b)
				}
				return
			}
			b := <-got
			br := bufio.NewReader(bytes.NewReader(b))
			h, err := proxyproto.Read(br)
			if err != nil {
				t.Fatalf("backend: no PROXY header: %v (%q)", err, b[:min(len(b), 40)])
			}
			want := tc.client
			if want == balancer {
				want = c.LocalAddr().String()
			}
			if h.SourceAddr == nil || h.SourceAddr.String() != want {
				t.Fatalf("backend's header names %v, want %s", h.SourceAddr, want)
			}
			if tlvs, _ := h.TLVs(); len(tlvs) != 1 || string(tlvs[0].Value) != "pt.nexmux.test" {
				t.Fatalf("backend's header TLVs %v: want the client's own server name alone", tlvs)
			}
			if rest, _ := io.ReadAll(br); !bytes.Equal(rest, append(append([]byte{}, hello...), tail...)) {
				t.Fatalf("backend got %d bytes after the header (%q…), want the %d-byte hello and the tail", len(rest), rest[:min(len(rest), 12)], len(hello))
			}
		})
	}
}

// Every way a client behind a trusted balancer can end its connection,
// refused or served, gives back its --max-conns places and its client
// slot: hostile clients repeating them cannot wear the limits down.
func TestHostileEndingsGiveTheLimitsBack(t *testing.T) {
	live := testnet.Listen(t)
	testnet.Serve(live, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 1)
		_, _ = c.Read(b)
		_, _ = c.Write([]byte("hi"))
	})
	dead := testnet.Listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	hello := func(name string) []byte { return testnet.ClientHello(t, &tls.Config{ServerName: name}) }
	v1 := []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n")
	local := v2Header(0x20, 0x00, 0)
	unknown := []byte("PROXY UNKNOWN\r\n")
	for _, backend := range []string{live.Addr().String(), deadAddr} {
		t.Run(backend, func(t *testing.T) {
			m := startMuxWith(t, muxConfig{proxyFrom: []string{"127.0.0.0/8"}, passthrough: backend, ppOut: 1,
				maxConns: 64, maxConnsPerClient: 8, handshakeTimeout: 2 * time.Second})
			cases := []struct {
				send  []byte
				reset bool // close with a reset once sent
			}{
				{append(append([]byte{}, v1...), hello("pt.nexmux.test")...), false},
				{append(append([]byte{}, v1...), hello("pt.nexmux.test")...), true},
				{append(append([]byte{}, local...), hello("pt.nexmux.test")...), false},
				{append(append([]byte{}, unknown...), hello("pt.nexmux.test")...), true},
				{append(append([]byte{}, v1...), hello("nobody.nexmux.test")...), false},
				{append(append([]byte{}, v1...), hello("team-a.nexmux.test")...), true},
				{append(append([]byte{}, v1...), v1...), false},
				{append(append([]byte{}, v1...), "GET / HTTP/1.1\r\n\r\n"...), false},
				{append(append([]byte{}, v1...), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"...), false},
				{append(append([]byte{}, v1...), 0x80, 0x2e, 0x01, 0x03, 0x01), false},
				{append(append([]byte{}, v1...), 0x16, 3, 1, 0, 0), false},
				{append(append([]byte{}, local...), "SSH-2.0-x\r\n"...), false},
				{v1[:20], false},
				{v1[:20], true},
				{v1, true},
				{[]byte{}, false},
			}
			for range 3 {
				for i, tc := range cases {
					c, err := net.Dial("tcp", m.addr)
					if err != nil {
						t.Fatal(err)
					}
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Write(tc.send); err != nil {
						t.Fatalf("case %d: %v", i, err)
					}
					if tc.reset {
						time.Sleep(20 * time.Millisecond)
						_ = c.(*net.TCPConn).SetLinger(0)
						c.Close()
						continue
					}
					_ = c.(*net.TCPConn).CloseWrite()
					_, _ = io.Copy(io.Discard, c)
					c.Close()
				}
			}
			waitCounts(t, m.srv, 0, 0)
		})
	}
}

// The router's side of socks5's TestAbsoluteIPLiteralAsNameRoutesLikeAnAddress:
// a server name that is an IP address with one trailing dot takes the
// default route, as the address does.
func TestAbsoluteIPAddressAsServerNameTakesTheDefaultRoute(t *testing.T) {
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "abcdefghij"})
	i := bytes.Index(hello, []byte("abcdefghij"))
	if i < 0 {
		t.Fatal("no server name in the hello")
	}
	copy(hello[i:], "127.0.0.1.")
	m := startMuxWith(t, muxConfig{defaultRoute: "team-a"})
	c, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	// crypto/tls refuses the trailing dot itself; what matters is that
	// routing took the default route (no unknown_sni refusal).
	_, _ = io.ReadAll(c)
	if strings.Contains(m.logs.String(), "reason=unknown_sni") || m.routed.get("default") != 1 {
		t.Fatalf("127.0.0.1. not routed to the default route; log:\n%s", m.logs.String())
	}
}

// Clients that stop mid-header or mid-hello are cut at the handshake
// timeout, however many: their goroutines end and their places and slots
// come back.
func TestStalledClientsLeaveNothingBehind(t *testing.T) {
	m := startMuxWith(t, muxConfig{proxyFrom: []string{"127.0.0.2/32"}, maxConns: 256, maxConnsPerClient: 64, handshakeTimeout: 500 * time.Millisecond})
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "team-a.nexmux.test"})
	v1 := []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n")
	base := runtime.NumGoroutine()
	var conns []net.Conn
	for i := range 40 {
		var from string
		var send []byte
		switch i % 5 {
		case 0:
			from, send = "127.0.0.1", hello[:len(hello)/2]
		case 1:
			from, send = "127.0.0.1", nil
		case 2:
			from, send = "127.0.0.2", v1[:10]
		case 3:
			from, send = "127.0.0.2", append(append([]byte{}, v1...), hello[:7]...)
		case 4:
			from, send = "127.0.0.2", v2Header(0x21, 0x11, 200, 1, 2, 3)
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write(send); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		// Cut means closed, or reset where unread bytes were left.
		if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("a stalled client was not cut at the handshake timeout: %v", err)
		}
	}
	waitCounts(t, m.srv, 0, 0)
	eventually(t, func() (bool, string) {
		n := runtime.NumGoroutine()
		return n <= base, fmt.Sprintf("%d goroutines after the stalled clients were cut, %d before", n, base)
	})
	for _, c := range conns {
		c.Close()
	}
}
