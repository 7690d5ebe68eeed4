package mux_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
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
