package daemon_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// A SOCKS5 session still waiting for its CONNECT when the drain starts
// carries no request and could not get a stream any more (the router
// refuses a CONNECT once draining): the drain closes it at once, as
// net/http does an idle keep-alive connection, instead of waiting for
// its negotiation deadline (--handshake-timeout, here far beyond the
// drain) and holding the exit.
func TestDrainClosesPendingSOCKS5Sessions(t *testing.T) {
	cfg := teamRoutes()
	cfg.Socks5Listen = "127.0.0.1:0"
	cfg.HandshakeTimeout = 10 * time.Minute
	st, _ := logStackWith(t, stack.Options{Config: cfg})
	socks := st.Daemon.Addr("socks5").String()
	c, err := net.DialTimeout("tcp", socks, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	// The drain's time is the test's bound: with the session left open,
	// Shutdown runs it out.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = st.Daemon.Shutdown(ctx)
	if ctx.Err() != nil {
		t.Error("the drain ran out its time with only a SOCKS5 session waiting for its CONNECT; want it closed at the drain's start")
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(m[:1]); err == nil {
		t.Error("pending SOCKS5 session still open after the drain")
	}
}
