package mux

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/internal/testnet"
)

// TestReasonForProxyHeaders: whatever go-proxyproto returns for a bad,
// missing or refused PROXY header, read from a real socket as the router
// reads it, is classified as a PROXY header refusal; a close before any
// byte stays a close.
func TestReasonForProxyHeaders(t *testing.T) {
	v2 := func(b ...byte) []byte { return append(append([]byte{}, proxyproto.SIGV2...), b...) }
	for _, tc := range []struct {
		name   string
		policy proxyproto.Policy
		send   []byte
		want   string
	}{
		{"required, plain hello", proxyproto.REQUIRE, []byte{22, 3, 1, 0, 4, 1, 0, 0, 0}, ReasonProxyHeader},
		{"refused, v1 header", proxyproto.REJECT, []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n"), ReasonProxyHeader},
		{"v1 without CRLF", proxyproto.REQUIRE, []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\n"), ReasonProxyHeader},
		{"v1 too long", proxyproto.REQUIRE, []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443" + string(make([]byte, 120)) + "\r\n"), ReasonProxyHeader},
		{"v1 bad address", proxyproto.REQUIRE, []byte("PROXY TCP4 203.0.113.999 127.0.0.1 5555 443\r\n"), ReasonProxyHeader},
		{"v1 bad port", proxyproto.REQUIRE, []byte("PROXY TCP4 203.0.113.7 127.0.0.1 99999 443\r\n"), ReasonProxyHeader},
		{"v1 unknown family", proxyproto.REQUIRE, []byte("PROXY TCP5 203.0.113.7 127.0.0.1 5555 443\r\n"), ReasonProxyHeader},
		{"v2 unknown version", proxyproto.REQUIRE, v2(0x31, 0x11, 0, 12), ReasonProxyHeader},
		{"v2 unknown family", proxyproto.REQUIRE, v2(0x21, 0x41, 0, 12), ReasonProxyHeader},
		{"v2 length too short for IPv4", proxyproto.REQUIRE, v2(0x21, 0x11, 0, 4, 1, 2, 3, 4), ReasonProxyHeader},
		// A peer that must send a header and closes first broke the
		// contract; anyone else closing is a health check.
		{"required, closed before a byte", proxyproto.REQUIRE, nil, ReasonProxyHeader},
		{"closed before a byte", proxyproto.REJECT, nil, ReasonClosed},
		{"truncated v1 header", proxyproto.REQUIRE, []byte("PROXY TCP4 203.0"), ReasonProxyHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := testnet.Pair(t)
			go func() {
				_, _ = c.Write(tc.send)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
			pc := proxyproto.NewConn(s, proxyproto.WithPolicy(tc.policy), proxyproto.SetReadHeaderTimeout(5*time.Second))
			_, err := io.ReadFull(newRoutingReader(pc), make([]byte, 1))
			if err == nil {
				t.Fatal("read succeeded")
			}
			if got := reasonFor(err); got != tc.want {
				t.Fatalf("reasonFor(%v) = %s, want %s", err, got, tc.want)
			}
		})
	}
}
