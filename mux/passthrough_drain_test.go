//go:build linux

package mux_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexmux/nexmux/internal/testnet"
)

// TestPassthroughDeliversWhatTheBackendSentBeforeItEnded: a backend answers
// and goes away (closes, or resets) while the client, not reading yet, is
// still sending. Whatever the backend sent and nexmux acknowledged is the
// client's: it must arrive whole before the end (a FIN or the reset passed
// on), however the client's late bytes meet the backend's closed socket.
// Cut at nexmux's first failed write toward the backend, the client lost the
// answer's tail still queued in nexmux.
func TestPassthroughDeliversWhatTheBackendSentBeforeItEnded(t *testing.T) {
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"})
	answer := bytes.Repeat([]byte("0123456789abcdef"), 256<<10/16)
	for _, tc := range []struct {
		name      string
		reset     bool // the backend ends with a reset, else a plain close
		wantReset bool // the client must see the reset after the answer
	}{
		{"backend closes", false, false},
		{"backend resets", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			m := startMux(t, nil, be.Addr().String(), 0)
			base := runtime.NumGoroutine()

			// A client slow to read: nexmux cannot hand it the answer at
			// once, so the answer waits inside nexmux.
			d := net.Dialer{Control: smallReceiveBuffer}
			c, err := d.Dial("tcp", m.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := c.Write(hello); err != nil {
				t.Fatal(err)
			}
			bc, err := be.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer bc.Close()
			_ = bc.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.ReadFull(bc, make([]byte, len(hello))); err != nil {
				t.Fatal(err)
			}
			if _, err := bc.Write(answer); err != nil {
				t.Fatal(err)
			}
			// Every byte of the answer acknowledged by nexmux: from here
			// on it is nexmux's to deliver.
			eventually(t, func() (bool, string) {
				info := tcpInfoOf(t, bc)
				return info.Notsent_bytes == 0 && info.Unacked == 0,
					fmt.Sprintf("backend: %d bytes not sent, %d segments unacknowledged", info.Notsent_bytes, info.Unacked)
			})
			if tc.reset {
				_ = bc.(*net.TCPConn).SetLinger(0)
			}
			bc.Close()
			// The client, still sending, meets the backend's closed socket
			// (its kernel answers with a reset) before it reads.
			var writeErr error
			for range 3 {
				time.Sleep(50 * time.Millisecond)
				if _, writeErr = c.Write([]byte("more of the request")); writeErr != nil {
					break
				}
			}
			got, err := io.ReadAll(c)
			if !bytes.Equal(got, answer) {
				t.Fatalf("client read %d bytes of the %d-byte answer (err %v), want all of it", len(got), len(answer), err)
			}
			// A reset is reported once: to a late write, if one met it.
			reset := errors.Is(err, syscall.ECONNRESET) || errors.Is(writeErr, syscall.ECONNRESET)
			switch {
			case tc.wantReset && !reset:
				t.Fatalf("after the answer: %v (late writes: %v), want the backend's reset passed on", err, writeErr)
			case !tc.wantReset && err != nil && !errors.Is(err, syscall.ECONNRESET):
				t.Fatalf("after the answer: %v, want an end or a reset", err)
			}
			c.Close()
			waitCounts(t, m.srv, 0, 0)
			eventually(t, func() (bool, string) {
				n := runtime.NumGoroutine()
				return n <= base, fmt.Sprintf("%d goroutines after the stream ended, %d before", n, base)
			})
		})
	}
}

func tcpInfoOf(t *testing.T, c net.Conn) *unix.TCPInfo {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || ierr != nil {
		t.Fatal(err, ierr)
	}
	return info
}

// TestPassthroughDeliversWhatTheClientSentBeforeItsReset: the same the other
// way: a client that sends and resets while the backend is slow to read
// has everything nexmux acknowledged delivered to the backend, then the
// reset.
func TestPassthroughDeliversWhatTheClientSentBeforeItsReset(t *testing.T) {
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"})
	upload := bytes.Repeat([]byte("fedcba9876543210"), 256<<10/16)
	// Inherited by accepted sockets: a backend slow to read.
	lc := net.ListenConfig{Control: smallReceiveBuffer}
	be, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	m := startMux(t, nil, be.Addr().String(), 0)
	base := runtime.NumGoroutine()
	c, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(append(hello, upload...)); err != nil {
		t.Fatal(err)
	}
	bc, err := be.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	_ = bc.SetDeadline(time.Now().Add(20 * time.Second))
	eventually(t, func() (bool, string) {
		info := tcpInfoOf(t, c)
		return info.Notsent_bytes == 0 && info.Unacked == 0,
			fmt.Sprintf("client: %d bytes not sent, %d segments unacknowledged", info.Notsent_bytes, info.Unacked)
	})
	_ = c.(*net.TCPConn).SetLinger(0)
	c.Close()
	time.Sleep(100 * time.Millisecond) // the reset reaches nexmux before the backend reads
	got, err := io.ReadAll(bc)
	if want := append(hello, upload...); !bytes.Equal(got, want) {
		t.Fatalf("backend read %d bytes of the %d sent (err %v), want all of them", len(got), len(want), err)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after the upload: %v, want the client's reset passed on", err)
	}
	bc.Close()
	waitCounts(t, m.srv, 0, 0)
	eventually(t, func() (bool, string) {
		n := runtime.NumGoroutine()
		return n <= base, fmt.Sprintf("%d goroutines after the stream ended, %d before", n, base)
	})
}

// smallReceiveBuffer is a Dialer's or ListenConfig's Control (inherited by
// accepted sockets) giving the socket a 4 KiB receive buffer: a peer slow
// to read, so what is sent to it waits inside nexmux.
func smallReceiveBuffer(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
	})
	return errors.Join(err, serr)
}
