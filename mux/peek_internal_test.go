//go:build unix

package mux

import (
	"net"
	"runtime"
	"syscall"
	"testing"

	"github.com/nexmux/nexmux/internal/testnet"
)

// TestRecvPeek: the read ahead's wait looks at the socket's next byte
// without taking it, reports an empty socket as EAGAIN, and allocates
// nothing on Linux (it runs once per request; peek_recvfrom.go).
func TestRecvPeek(t *testing.T) {
	client, server := testnet.Pair(t)
	rc, err := server.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	peek := func(b []byte) (n int, errno syscall.Errno) {
		if err := rc.Control(func(fd uintptr) { n, errno = recvPeek(fd, b) }); err != nil {
			t.Fatal(err)
		}
		return n, errno
	}
	var b [4]byte
	if n, errno := peek(b[:]); n != 0 || errno != syscall.EAGAIN {
		t.Fatalf("empty socket: %d, %v; want 0, EAGAIN", n, errno)
	}
	if _, err := client.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	// Twice: a peek leaves the bytes where they were.
	for range 2 {
		n, errno := 0, syscall.EAGAIN
		for errno == syscall.EAGAIN {
			n, errno = peek(b[:])
		}
		if errno != 0 || string(b[:n]) != "ab" {
			t.Fatalf("peek: %q, %v; want \"ab\"", b[:n], errno)
		}
	}
	if runtime.GOOS == "linux" && runtime.GOARCH != "386" && runtime.GOARCH != "s390x" {
		if a := testing.AllocsPerRun(100, func() { _, _ = peek(b[:1]) }); a != 0 {
			t.Errorf("recvPeek allocates %.0f times per call", a)
		}
	}
	got := make([]byte, 2)
	if _, err := server.Read(got); err != nil || string(got) != "ab" {
		t.Fatalf("read after peeks: %q, %v", got, err)
	}
}
