package socks5_test

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
)

// A reset passes through a SOCKS5 stream to a passthrough route as it
// does on a direct connection: the backend's reaches the SOCKS client as
// a reset, and the client's the backend, never as a FIN that makes a cut
// stream look ended.
func TestPassthroughPassesResetOnOverSOCKS(t *testing.T) {
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"})
	for _, tc := range []struct {
		name        string
		clientReset bool // else the backend resets
	}{
		{"client resets", true},
		{"backend resets", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			st := start(t, config{backend: be.Addr().String()})
			code, c, err := connect(t, st.socksAddr, nil, 1, "pt.nexmux.test", 443)
			if err != nil || code != replySucceeded {
				t.Fatalf("CONNECT: reply %d, %v", code, err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(hello); err != nil {
				t.Fatal(err)
			}
			bc, err := be.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer bc.Close()
			_ = bc.SetDeadline(time.Now().Add(10 * time.Second))
			// The stream is up both ways.
			if _, err := io.ReadFull(bc, make([]byte, len(hello))); err != nil {
				t.Fatal(err)
			}
			if _, err := bc.Write([]byte("S")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			resetter, other, otherName := c, bc, "backend"
			if !tc.clientReset {
				resetter, other, otherName = bc, c, "SOCKS client"
			}
			testnet.ResetReachesOther(t, resetter, other, otherName)
		})
	}
}
