package mux

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/sni"
)

// firstFlight returns the first flight a crypto/tls client with cfg sends.
func firstFlight(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _ = tls.Client(a, cfg).Handshake() }()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// readCounter counts the reads that reach the socket.
type readCounter struct {
	net.Conn
	reads atomic.Int64
}

func (r *readCounter) Read(p []byte) (int, error) {
	r.reads.Add(1)
	return r.Conn.Read(p)
}

func loopbackPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	_ = server.SetDeadline(time.Now().Add(20 * time.Second))
	return client, server
}

// route reads the routing phase the way Server.handle does.
func readRouting(t *testing.T, rr *routingReader) *sni.ClientHello {
	t.Helper()
	var first [1]byte
	if _, err := io.ReadFull(rr, first[:]); err != nil {
		t.Fatal(err)
	}
	hello, err := sni.ReadClientHello(io.MultiReader(bytes.NewReader(first[:]), rr))
	if err != nil {
		t.Fatal(err)
	}
	return hello
}

// A client's first flight costs one read, and bytes sent behind the hello
// are kept, in order, for whoever reads the connection next.
func TestRoutingReaderOneReadForAHello(t *testing.T) {
	hello := firstFlight(t, &tls.Config{ServerName: "team-a.nexmux.test"})
	extra := []byte("sent right behind the hello")
	c, s := loopbackPair(t)
	if _, err := c.Write(append(append([]byte{}, hello...), extra...)); err != nil {
		t.Fatal(err)
	}
	rc := &readCounter{Conn: s}
	rr := newRoutingReader(rc)
	h := readRouting(t, rr)
	if h.ServerName != "team-a.nexmux.test" || !bytes.Equal(h.Raw, hello) {
		t.Fatalf("hello %q, %d raw bytes (sent %d)", h.ServerName, len(h.Raw), len(hello))
	}
	if n := rc.reads.Load(); n != 1 {
		t.Errorf("%d reads for a %d-byte hello, want 1", n, len(hello))
	}
	if want := append(append([]byte{}, hello...), extra...); !bytes.Equal(rr.buf, want) {
		t.Errorf("kept %d bytes, want the %d sent (hello and what followed)", len(rr.buf), len(want))
	}
}

// A hello larger than the first read, arriving in pieces, is assembled
// whole; nothing past it is invented.
func TestRoutingReaderLargeFragmentedHello(t *testing.T) {
	var protos []string
	for i := range 150 {
		protos = append(protos, fmt.Sprintf("protocol-name-%03d-padding-padding", i))
	}
	hello := firstFlight(t, &tls.Config{ServerName: "team-b.nexmux.test", NextProtos: protos})
	if len(hello) <= 2*routingReadSize {
		t.Fatalf("hello is %d bytes: too small to need the buffer to grow twice", len(hello))
	}
	c, s := loopbackPair(t)
	go func() {
		for i := 0; i < len(hello); i += 700 {
			_, _ = c.Write(hello[i:min(i+700, len(hello))])
			time.Sleep(2 * time.Millisecond)
		}
	}()
	rr := newRoutingReader(s)
	h := readRouting(t, rr)
	if h.ServerName != "team-b.nexmux.test" || !bytes.Equal(h.Raw, hello) {
		t.Fatalf("hello %q, %d raw bytes (sent %d)", h.ServerName, len(h.Raw), len(hello))
	}
	if !bytes.Equal(rr.buf, hello) {
		t.Fatalf("kept %d bytes, the client sent %d", len(rr.buf), len(hello))
	}
}

// Bytes and an error from the same read: the bytes first, then the error.
func TestRoutingReaderDataThenError(t *testing.T) {
	c, s := loopbackPair(t)
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\n"))
	c.Close()
	rr := newRoutingReader(s)
	b, err := io.ReadAll(rr)
	if err != nil || string(b) != "GET / HTTP/1.1\r\n" {
		t.Fatalf("ReadAll = %q, %v", b, err)
	}
	if !bytes.Equal(rr.buf, b) {
		t.Fatal("buf is not every byte read")
	}
}
