package mux_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
)

// TestPassthroughPassesResetOn: a passthrough stream is a raw TCP proxy,
// so an abortive close on one side reaches the other as a reset, not as a
// FIN: a client (or backend) reading a FIN cannot tell a cut stream from
// one that ended. Both directions, with and without PROXY out.
func TestPassthroughPassesResetOn(t *testing.T) {
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"})
	for _, tc := range []struct {
		name        string
		ppOut       byte
		clientReset bool // else the backend resets
	}{
		{"client resets", 0, true},
		{"backend resets", 0, false},
		{"client resets, PROXY v2 out", 2, true},
		{"backend resets, PROXY v1 out", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			m := startMux(t, nil, be.Addr().String(), tc.ppOut)
			base := runtime.NumGoroutine()

			c, err := net.Dial("tcp", m.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
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
			// The hello (after any header) reached the backend, and a
			// byte from it the client: the stream is up both ways.
			var got []byte
			for !bytes.HasSuffix(got, hello) {
				buf := make([]byte, 4096)
				n, err := bc.Read(buf)
				if err != nil {
					t.Fatalf("backend: %v after %d bytes, before the whole hello", err, len(got))
				}
				got = append(got, buf[:n]...)
			}
			if _, err := bc.Write([]byte("S")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}

			resetter, other, otherName := c, bc, "backend"
			if !tc.clientReset {
				resetter, other, otherName = bc, c, "client"
			}
			testnet.ResetReachesOther(t, resetter, other, otherName)
			c.Close()
			bc.Close()
			waitCounts(t, m.srv, 0, 0)
			eventually(t, func() (bool, string) {
				n := runtime.NumGoroutine()
				return n <= base, fmt.Sprintf("%d goroutines after the stream was reset, %d before", n, base)
			})
		})
	}
}
