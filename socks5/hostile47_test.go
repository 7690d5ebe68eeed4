package socks5_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/mux"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/socks5"
)

// connectRequest is a SOCKS5 CONNECT request for a name (ATYP 3).
func connectRequest(host string, port int) []byte {
	req := append([]byte{5, 1, 0, atypName, byte(len(host))}, host...)
	return binary.BigEndian.AppendUint16(req, uint16(port))
}

// A name is case-insensitive and may be absolute, in a CONNECT as in a
// server name: "TEAM-A.NEXMUX.TEST." is the route team-a.nexmux.test.
func TestConnectNameCaseAndTrailingDot(t *testing.T) {
	st := start(t, config{})
	for _, host := range []string{"TEAM-A.NEXMUX.TEST", "team-a.nexmux.test.", "Team-A.Nexmux.Test."} {
		code, c, err := connect(t, st.socksAddr, nil, 1, host, 443)
		if err != nil || code != replySucceeded {
			t.Fatalf("CONNECT %s:443: reply %d, %v", host, code, err)
		}
		conn := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.ca.Pool()})
		if _, rt := get(t, conn); rt != "team-a.nexmux.test" {
			t.Fatalf("CONNECT %s: route %q", host, rt)
		}
	}
}

// A client that sends its greeting, login, request and ClientHello in one
// write (optimistic data, as some SOCKS clients do), or each byte in a
// segment of its own, is served the same: no byte read ahead by the
// SOCKS parser is lost before the router's peek.
func TestPipelinedAndByteByByteSessions(t *testing.T) {
	be, got := backendOnce(t, func(c net.Conn) []byte {
		b := make([]byte, 64<<10)
		n, _ := io.ReadAtLeast(c, b, 1)
		// The rest of what the client sent, up to its half-close.
		rest, _ := io.ReadAll(c)
		return append(b[:n], rest...)
	})
	users := func() map[string]string { return map[string]string{"ci": "s3cret"} }
	st := start(t, config{backend: be.Addr().String(), opts: socks5.Options{Users: users}})
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"})
	tail := []byte("after the hello")
	var all []byte
	all = append(all, 5, 1, 2)
	all = append(append(append(all, 1, 2), "ci"...), 6)
	all = append(all, "s3cret"...)
	all = append(all, connectRequest("pt.nexmux.test", 443)...)
	all = append(all, hello...)
	all = append(all, tail...)
	c, err := net.Dial("tcp", st.socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(all); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	// method choice, login status, reply (IPv4 bound address)
	var rep [2 + 2 + 10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatalf("replies: %v (% x)", err, rep)
	}
	if rep[1] != 2 || rep[3] != 0 || rep[5] != replySucceeded {
		t.Fatalf("replies % x: want user/password chosen, login ok, CONNECT succeeded", rep)
	}
	if b := <-got; !bytes.Equal(b, append(append([]byte{}, hello...), tail...)) {
		t.Fatalf("backend got %d bytes (%q...), want the hello and the tail (%d)", len(b), b[:min(len(b), 8)], len(hello)+len(tail))
	}
}

// A request written a byte at a time, each byte its own segment.
func TestRequestByteByByte(t *testing.T) {
	st := start(t, config{})
	c, err := net.Dial("tcp", st.socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetNoDelay(true)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	dribble := func(b []byte) {
		for i := range b {
			if _, err := c.Write(b[i : i+1]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	dribble([]byte{5, 1, 0})
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m[1] != 0 {
		t.Fatalf("method reply % x, %v", m, err)
	}
	dribble(connectRequest("team-a.nexmux.test", 443))
	var rep [10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil || rep[1] != replySucceeded {
		t.Fatalf("reply % x, %v", rep, err)
	}
	conn := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.ca.Pool()})
	if _, rt := get(t, conn); rt != "team-a.nexmux.test" {
		t.Fatalf("route %q", rt)
	}
}

// Protocol violations end the session without a stream and without a
// success reply: a SOCKS4 greeting, no methods, a login sub-negotiation
// of another version, an unknown address type.
func TestProtocolViolationsRefused(t *testing.T) {
	users := func() map[string]string { return map[string]string{"ci": "s3cret"} }
	open := start(t, config{spec: route.Spec{Default: "fallback"}})
	auth := start(t, config{opts: socks5.Options{Users: users}})
	for _, tc := range []struct {
		name string
		st   *stack
		send []byte
	}{
		{"socks4", open, []byte{4, 1, 1, 187, 127, 0, 0, 1, 0}},
		{"no methods", open, []byte{5, 0}},
		{"no auth offered where required", auth, []byte{5, 1, 0}},
		{"login version 2", auth, []byte{5, 1, 2, 2, 2, 'c', 'i', 6, 's', '3', 'c', 'r', 'e', 't'}},
		{"empty user and password", auth, []byte{5, 1, 2, 1, 0, 0}},
		{"address type 2", open, []byte{5, 1, 0, 5, 1, 0, 2, 127, 0, 0, 1, 1, 187}},
		{"request version 4", open, []byte{5, 1, 0, 4, 1, 0, 1, 127, 0, 0, 1, 1, 187}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", tc.st.socksAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(c)
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("session not ended (got % x)", b)
			}
			// No reply may say "succeeded": a method choice is 2 bytes, a
			// login status 2 more; a request reply has 0 in its second byte
			// only on success.
			for i := 0; i+1 < len(b); i++ {
				if b[i] == 5 && b[i+1] == replySucceeded && i >= 2 {
					t.Fatalf("got % x: a success reply", b)
				}
			}
		})
	}
}

// A PROXY header inside a CONNECT stream is the client's own data, never a
// balancer's: it is refused (the stream is in-process, no balancer stands
// in front of it), so a SOCKS client cannot name itself another address,
// even one that came in through a trusted balancer.
func TestProxyHeaderInsideTheTunnelRefused(t *testing.T) {
	for _, viaBalancer := range []bool{false, true} {
		for _, port := range []int{443, 8082} {
			t.Run(fmt.Sprintf("via balancer %v port %d", viaBalancer, port), func(t *testing.T) {
				cfg := config{spec: route.Spec{Ports: []string{"8082=team-p"}}, proxyFrom: []string{"192.0.2.0/24"}}
				var version byte
				if viaBalancer {
					cfg.proxyFrom = []string{"127.0.0.1/32"}
					version = 1
				}
				st := start(t, cfg)
				c := dialVia(t, st, version)
				code, _, err := handshake(c, nil, 1, "team-a.nexmux.test", port)
				if err != nil || code != replySucceeded {
					t.Fatalf("CONNECT: reply %d, %v", code, err)
				}
				spoof := "PROXY TCP4 198.51.100.9 127.0.0.1 4444 443\r\n"
				if _, err := io.WriteString(c, spoof); err != nil {
					t.Fatal(err)
				}
				tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.ca.Pool()})
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				if port == 8082 {
					_, err = io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
					if err == nil {
						b, _ := io.ReadAll(c) // to the close, or the deadline
						if strings.Contains(string(b), "198.51.100.9") || strings.HasPrefix(string(b), "HTTP/1.1 200") {
							t.Fatalf("a PROXY header inside the tunnel was taken: %q", b)
						}
					}
					return
				}
				if err := tc.Handshake(); err == nil {
					body, _ := get(t, tc)
					t.Fatalf("a PROXY header inside the tunnel was taken: handshake done, %q", body)
				}
				if !strings.Contains(st.logs.String(), "reason=proxy_header") {
					t.Fatalf("no proxy_header refusal logged:\n%s", st.logs.String())
				}
			})
		}
	}
}

// An absolute IP literal ("127.0.0.1.", "::1." is no address) sent as a
// name is the address it spells, as in a server name, where the router
// drops the one trailing dot and routes the address to the default route:
// a CONNECT reaches that route too, and is refused without one.
func TestAbsoluteIPLiteralAsNameRoutesLikeAnAddress(t *testing.T) {
	for _, def := range []string{"fallback", ""} {
		st := start(t, config{spec: route.Spec{Default: def}})
		c, err := net.Dial("tcp", st.socksAddr)
		if err != nil {
			t.Fatal(err)
		}
		code, _, err := handshakeAs(c, nil, 1, atypName, "127.0.0.1.", 443)
		c.Close()
		want := byte(replySucceeded)
		if def == "" {
			want = replyNotAllowed
		}
		if err != nil || code != want {
			t.Errorf("default route %q, CONNECT 127.0.0.1.:443 as a name: reply %d, %v; want %d", def, code, err, want)
		}
	}
}

// A balancer's v2 header that relays a datagram flow (UDP over IPv4), or
// whose CRC32C TLV does not match it, is refused as a PROXY header, as on
// the TLS listener (mux's TestInboundProxyHeaderVariants): a UDP client is
// not passed on as a TCP one, nor a damaged or forged header trusted. The
// same header with its checksum right names the client.
func TestBalancersUDPHeaderRefused(t *testing.T) {
	st := start(t, config{proxyFrom: []string{"127.0.0.1/32"}})
	addrs := []byte{203, 0, 113, 7, 10, 0, 0, 1, 0x15, 0xb3, 4, 56}
	withCRC := func(fam byte, flip uint32) []byte {
		h := append(append([]byte{}, proxyproto.SIGV2...), 0x21, fam, 0, 12+7)
		h = append(append(h, addrs...), byte(proxyproto.PP2_TYPE_CRC32C), 0, 4, 0, 0, 0, 0)
		binary.BigEndian.PutUint32(h[len(h)-4:], crc32.Checksum(h, crc32.MakeTable(crc32.Castagnoli))^flip)
		return h
	}
	for _, tc := range []struct {
		name   string
		header []byte
		ok     bool
	}{
		{"udp4", append(append(append([]byte{}, proxyproto.SIGV2...), 0x21, 0x12, 0, 12), addrs...), false},
		{"tcp4, bad CRC32C", withCRC(0x11, 1), false},
		{"tcp4, CRC32C", withCRC(0x11, 0), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := st.refusedFor(mux.ReasonProxyHeader)
			c, err := net.Dial("tcp", st.socksAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.header); err != nil {
				t.Fatal(err)
			}
			code, _, err := handshake(c, nil, 1, "team-a.nexmux.test", 443)
			if !tc.ok {
				if err == nil {
					t.Fatalf("CONNECT after the header: reply %d, want the connection closed", code)
				}
				for deadline := time.Now().Add(10 * time.Second); st.refusedFor(mux.ReasonProxyHeader) != before+1; time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("%d PROXY header refusals counted, want %d", st.refusedFor(mux.ReasonProxyHeader), before+1)
					}
				}
				return
			}
			if err != nil || code != replySucceeded {
				t.Fatalf("CONNECT: reply %d, %v", code, err)
			}
			body, _ := get(t, tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.ca.Pool()}))
			if want := "203.0.113.7:5555 team-a.nexmux.test true"; body != want {
				t.Fatalf("the router saw %q, want %q", body, want)
			}
		})
	}
}
