package mux_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/mux"
)

// A ClientHello whose server name is an IP address (RFC 6066 forbids it;
// Go, curl and docker never send one, hand-written OpenSSL clients do) is
// routed as one without a name: to --default-route, as nginx's default
// server takes it. Before, it was refused as an unknown name.
func TestIPAddressAsServerNameTakesTheDefaultRoute(t *testing.T) {
	// Go's client leaves an IP out of the hello: a name of the same length
	// is written over.
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "abcdefghi"})
	i := bytes.Index(hello, []byte("abcdefghi"))
	if i < 0 {
		t.Fatal("no server name in the hello")
	}
	copy(hello[i:], "127.0.0.1")
	var client string
	first := func(m *muxServer) byte {
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		client = c.LocalAddr().String()
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatal(err)
		}
		return b[0]
	}
	// 22: a ServerHello (handshake record); 21: an alert.
	if got := first(startMuxWith(t, muxConfig{defaultRoute: "team-a"})); got != 22 {
		t.Errorf("with --default-route: first record type %d, want a ServerHello (22)", got)
	}
	m := startMuxWith(t, muxConfig{})
	if got := first(m); got != 21 {
		t.Errorf("without --default-route: first record type %d, want an alert (21)", got)
	}
	// Refused as a hello with no name: the connection (and the HTTP stage
	// behind it) holds none.
	m.waitRefusal(t, client, mux.ReasonNoSNI)
}

// An IPv6 address in brackets, as a URL writes it, or with a zone, is an
// IP address too: crypto/tls's own client sends no server name for either
// (hostnameInSNI), and a hand-written client that copies the URL's host
// into its hello means the address, not a name. Both take the default
// route, as the bare address does, and the fallback certificate.
func TestBracketedIPv6AsServerNameTakesTheDefaultRoute(t *testing.T) {
	m := startMuxWith(t, muxConfig{defaultRoute: "team-a"})
	for _, name := range []string{"[::1]", "[2001:db8::1]", "[fe80::1%eth0]", "fe80::1%eth0"} {
		t.Run(name, func(t *testing.T) {
			// Overwrite a name of the same length in a real hello.
			hello := testnet.ClientHello(t, &tls.Config{ServerName: strings.Repeat("a", len(name))})
			i := bytes.Index(hello, []byte(strings.Repeat("a", len(name))))
			if i < 0 {
				t.Fatal("no server name in the hello")
			}
			copy(hello[i:], name)
			c, err := net.Dial("tcp", m.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(hello); err != nil {
				t.Fatal(err)
			}
			// 22: a ServerHello (handshake record); 21: an alert.
			var b [7]byte
			n, _ := io.ReadAtLeast(c, b[:], 1)
			if b[0] != 22 {
				t.Fatalf("server name %q: got % x, want a ServerHello (22); log:\n%s", name, b[:n], m.logs.String())
			}
		})
	}
}
