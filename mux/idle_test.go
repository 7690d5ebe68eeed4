package mux_test

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
)

// backend accepts passthrough streams and runs serve on each.
func backend(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln := testnet.Listen(t)
	testnet.Serve(ln, serve)
	return ln.Addr().String()
}

// A passthrough stream whose backend never answers is closed after
// --passthrough-idle-timeout; one that keeps moving bytes is not.
func TestPassthroughIdleTimeout(t *testing.T) {
	silent := backend(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	m := startMuxWith(t, muxConfig{passthrough: silent, passthroughIdle: 300 * time.Millisecond})
	c, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"}))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("stream to a silent backend not closed: %v", err)
	}

	// A backend that sends a byte every 50 ms for 2 s, with the idle
	// timeout at 1 s: every byte arrives.
	const n = 40
	ticking := backend(t, func(c net.Conn) {
		for range n {
			time.Sleep(50 * time.Millisecond)
			if _, err := c.Write([]byte{'x'}); err != nil {
				return
			}
		}
	})
	m2 := startMuxWith(t, muxConfig{passthrough: ticking, passthroughIdle: time.Second})
	c2, err := net.Dial("tcp", m2.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Write(testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"}))
	c2.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c2)
	if len(got) != n {
		t.Fatalf("active stream cut: %d of %d bytes (%v)", len(got), n, err)
	}
}
