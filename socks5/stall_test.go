//go:build linux

package socks5_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
)

// A SOCKS5 stream to a passthrough route whose side never reads but sends
// a byte every 100 ms, while the other sends without end, is cut after
// --passthrough-idle-timeout, as a direct stream is
// (mux.TestPassthroughSideThatNeverReadsButTricklesIsCut). The router's
// side of a SOCKS5 stream is a socket pair without TCP counters: only the
// backend's socket was watched, so a SOCKS client that read nothing held
// its stream, its buffers and its places for as long as it trickled. The
// cut resets the SOCKS client at once, as it does a direct one: its
// session does not wait for the client to write again (the trickle stops
// at the cut) or for the SOCKS idle timeout.
func TestPassthroughOverSOCKSSideThatNeverReadsButTricklesIsCut(t *testing.T) {
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"})
	for _, side := range []string{"client", "backend"} {
		t.Run(side, func(t *testing.T) {
			const idle = 500 * time.Millisecond
			be, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			st := start(t, config{backend: be.Addr().String(), routerTimeout: idle})
			code, c, err := connect(t, st.socksAddr, nil, 1, "pt.nexmux.test", 443)
			if err != nil || code != replySucceeded {
				t.Fatalf("CONNECT: reply %d, %v", code, err)
			}
			_ = c.SetDeadline(time.Time{})
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
			stalled, reader := c, bc // the side that never reads, and the other
			if side == "backend" {
				stalled, reader = bc, c
			}
			go io.Copy(io.Discard, reader) // it reads all the stalled side sends
			t0 := time.Now()
			readerErr := testnet.Flood(reader)
			stop := make(chan struct{})
			stalledErr := testnet.TrickleBytes(stalled, stop)
			select {
			case end := <-readerErr:
				// 10×: the watch ticks every idle/8, and a loaded machine
				// (-race, two cores, packages in parallel) delays the
				// cut's goroutine; a held stream fails below at 40×.
				if d := end.AfterStall; d > 10*idle {
					t.Errorf("stream cut %v after it stalled, --passthrough-idle-timeout %v: want within 10×", d.Round(time.Millisecond), idle)
				}
				t.Logf("the other side's write failed %v after it stalled (%v after the start): %v", end.AfterStall.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), end.Err)
			case <-time.After(40 * idle):
				t.Fatalf("a %s that never reads but trickles holds its SOCKS5 stream past %v, --passthrough-idle-timeout %v", side, 40*idle, idle)
			}
			close(stop)
			if err := <-stalledErr; err != nil {
				t.Logf("the %s's trickle failed before it was stopped: %v", side, err)
			}
			for deadline := time.Now().Add(5 * time.Second); !stalledLine(st.logs.String(), side); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no stalled-stream line for side=%s", side)
				}
			}
			// Ended without another byte or a read from the stalled
			// side: read, a SOCKS client would let the session pass on
			// what the pair holds, and its end.
			for deadline := time.Now().Add(5 * time.Second); st.ingress.Sessions() != 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the SOCKS5 session is open 5 s after the cut, its %s neither reading nor writing", side)
				}
			}
			waitPlacesBack(t, st)
			// The stalled side was reset.
			_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := io.Copy(io.Discard, stalled); !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("the %s read %d more bytes after the cut, then %v; want a reset", side, n, err)
			}
		})
	}
}

// stalledLine reports whether logs have the router's "stalled stream
// closed" line naming side.
func stalledLine(logs, side string) bool {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "passthrough: stalled stream closed") && strings.Contains(l, "side="+side+" ") {
			return true
		}
	}
	return false
}
