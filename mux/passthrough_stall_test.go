//go:build linux

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
)

// stallStream opens a passthrough stream through a server with
// --passthrough-idle-timeout idle and returns the client's socket and the
// backend's, the hello read off it.
func stallStream(t *testing.T, idle time.Duration) (m *muxServer, c, bc net.Conn) {
	t.Helper()
	be, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	m = startMuxWith(t, muxConfig{passthrough: be.Addr().String(), passthroughIdle: idle})
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"})
	c, err = net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	bc, err = be.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bc.Close() })
	if _, err := io.ReadFull(bc, make([]byte, len(hello))); err != nil {
		t.Fatal(err)
	}
	return m, c, bc
}

// waitStalledLog waits for the server's "stalled stream closed" line
// naming side.
func waitStalledLog(t *testing.T, m *muxServer, side string) {
	t.Helper()
	eventually(t, func() (bool, string) {
		for _, l := range strings.Split(m.logs.String(), "\n") {
			if strings.Contains(l, "passthrough: stalled stream closed") && strings.Contains(l, "side="+side+" ") {
				return true, ""
			}
		}
		return false, "no stalled-stream log line for side=" + side
	})
}

// A side that never reads but sends a byte every 100 ms, while the other
// sends without end: the backend's socket moves bytes all along, so the
// stream is never idle, but the silent reader has acknowledged nothing
// queued for it for --passthrough-idle-timeout: the stream is cut. Without
// the send-progress deadline it was held (with its buffers and its places)
// for as long as that side trickled. Both ways: a client that never reads,
// and a backend that never reads.
func TestPassthroughSideThatNeverReadsButTricklesIsCut(t *testing.T) {
	for _, side := range []string{"client", "backend"} {
		t.Run(side, func(t *testing.T) {
			const idle = 500 * time.Millisecond
			m, c, bc := stallStream(t, idle)
			stalled, reader := c, bc // the side that never reads, and the other
			if side == "backend" {
				stalled, reader = bc, c
			}
			go io.Copy(io.Discard, reader) // it reads all the stalled side sends
			t0 := time.Now()
			readerErr := testnet.Flood(reader)
			stalledErr := testnet.TrickleBytes(stalled, nil)
			select {
			case end := <-readerErr:
				// 4×: the watch ticks every idle/8, and a loaded machine
				// delays the cut's goroutine; a held stream fails below at 10×.
				if d := end.AfterStall; d > 4*idle {
					t.Errorf("stream cut %v after it stalled, --passthrough-idle-timeout %v: want within 4×", d.Round(time.Millisecond), idle)
				}
				t.Logf("the other side's write failed %v after it stalled (%v after the start): %v", end.AfterStall.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), end.Err)
			case <-time.After(10 * idle):
				t.Fatalf("a %s that never reads but trickles holds the stream past %v, --passthrough-idle-timeout %v", side, 10*idle, idle)
			}
			select {
			case <-stalledErr:
			case <-time.After(5 * time.Second):
				t.Fatalf("the %s's stream stays open after the cut", side)
			}
			waitStalledLog(t, m, side)
			waitCounts(t, m.srv, 0, 0)
		})
	}
}

// A client slower to read than the backend sends keeps bytes queued in
// nexmux all along, but acknowledges some within every idle timeout: it
// gets the whole answer, however long that takes next to the timeout.
func TestPassthroughSlowReaderIsNotCut(t *testing.T) {
	// 1 s: a reader paused 300 ms by a loaded machine must not look stalled.
	const idle = time.Second
	m, c, bc := stallStream(t, idle)
	answer := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	go func() {
		bc.Write(answer)
		bc.Close()
	}()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	t0 := time.Now()
	got := 0
	buf := make([]byte, 32<<10)
	for {
		time.Sleep(20 * time.Millisecond)
		n, err := io.ReadFull(c, buf)
		got += n
		if err != nil {
			if err != io.EOF && err != io.ErrUnexpectedEOF {
				t.Fatalf("slow reader cut after %v, %d of %d bytes read, --passthrough-idle-timeout %v: %v", time.Since(t0).Round(time.Millisecond), got, len(answer), idle, err)
			}
			break
		}
	}
	if got != len(answer) {
		t.Fatalf("slow reader got %d of %d bytes", got, len(answer))
	}
	if d := time.Since(t0); d < 2*idle {
		t.Fatalf("the answer took %v, not long next to the idle timeout %v: the test shows nothing", d, idle)
	}
	if strings.Contains(m.logs.String(), "passthrough: stalled stream closed") {
		t.Fatal("slow reader logged as stalled")
	}
}
