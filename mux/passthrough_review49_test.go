//go:build linux

package mux_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
)

// A client that resets while nexmux still holds bytes it sent, which a
// backend busy sending does not read, leaves nothing to deliver to it: the
// stream ends, the backend learns of it, and its places go back, at the
// latest at --passthrough-idle-timeout (README: "a side that never reads
// holds it at most --passthrough-idle-timeout").
func TestPassthroughClientResetEndsAStreamWhoseBackendSendsWithoutReading(t *testing.T) {
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"})
	lc := net.ListenConfig{Control: smallReceiveBuffer} // a backend whose buffer fills
	be, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	const idle = 3 * time.Second
	m := startMuxWith(t, muxConfig{passthrough: be.Addr().String(), passthroughIdle: idle})

	d := net.Dialer{Control: smallReceiveBuffer} // a client that does not read: nexmux's writes to it wait
	c, err := d.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	bc, err := be.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	if _, err := io.ReadFull(bc, make([]byte, len(hello))); err != nil {
		t.Fatal(err)
	}
	// The backend sends without end and reads nothing more.
	backendErr := make(chan error, 1)
	go func() {
		chunk := bytes.Repeat([]byte("b"), 32<<10)
		for {
			if _, err := bc.Write(chunk); err != nil {
				backendErr <- err
				return
			}
		}
	}()
	// The client sends until its writes wait (the backend's buffers and
	// nexmux's full), then resets.
	_ = c.SetWriteDeadline(time.Now().Add(idle / 3))
	chunk := bytes.Repeat([]byte("c"), 64<<10)
	sent := 0
	for {
		n, err := c.Write(chunk)
		sent += n
		if err != nil {
			break
		}
	}
	_ = c.(*net.TCPConn).SetLinger(0)
	c.Close()
	t0 := time.Now()
	select {
	case err := <-backendErr:
		t.Logf("backend's write failed %v after the client's reset: %v (client sent %d bytes)", time.Since(t0).Round(time.Millisecond), err, sent)
	case <-time.After(3 * idle):
		info := tcpInfoOf(t, bc)
		t.Fatalf("%v after the client's reset (it sent %d bytes, the backend read none) the backend still sends, --passthrough-idle-timeout %v: the stream is kept while nexmux reads and drops its bytes (backend: %d bytes received unread, state %d); want it ended", 3*idle, sent, idle, info.Bytes_received, info.State)
	}
	waitCounts(t, m.srv, 0, 0)
}
