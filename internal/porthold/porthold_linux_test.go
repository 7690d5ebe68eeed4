package porthold

import (
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
)

// wrapped hides the listener's SyscallConn: Stop must then bind after the
// close instead of beside the live listener.
type wrapped struct{ net.Listener }

// A held port refuses connections and every other bind, the earlier
// connections' TIME_WAIT entries and reset ones notwithstanding, and
// listens again on the same socket, round after round.
func TestStopHoldsThePort(t *testing.T) {
	for _, tc := range []struct {
		name   string
		host   string
		beside bool
		reset  bool
	}{
		{"beside", "127.0.0.1", true, false},
		{"beside-reset", "127.0.0.1", true, true},
		{"after-close", "127.0.0.1", false, false},
		{"ipv6", "::1", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", net.JoinHostPort(tc.host, "0"))
			if err != nil {
				if tc.host == "::1" {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
			others := []string{addr, ":" + port, "0.0.0.0:" + port}
			if tc.host == "::1" {
				others = []string{addr, ":" + port, "[::]:" + port}
			}
			for round := 1; round <= 3; round++ {
				// One connection the server closes first (TIME_WAIT on the
				// port), one still open when the listener stops.
				c1, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				s1, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				s1.Close()
				io.Copy(io.Discard, c1)
				c1.Close()
				c2, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				s2, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				var l net.Listener = ln
				if !tc.beside {
					l = wrapped{ln}
				}
				h, err := Stop(l, func() {
					if tc.reset {
						s2.(*net.TCPConn).SetLinger(0)
					}
					s2.Close()
					ln.Close()
				})
				c2.Close()
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				if c, err := net.Dial("tcp", addr); err == nil {
					c.Close()
					t.Fatalf("round %d: a held port accepted a connection", round)
				} else if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Fatalf("round %d: dial: %v, want ECONNREFUSED", round, err)
				}
				for _, other := range others {
					if o, err := net.Listen("tcp", other); err == nil {
						o.Close()
						t.Fatalf("round %d: %s was listened on while held", round, other)
					} else if !errors.Is(err, syscall.EADDRINUSE) {
						t.Fatalf("round %d: listen %s: %v, want EADDRINUSE", round, other, err)
					}
				}
				if ln, err = h.Listen(); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				if ln.Addr().String() != addr {
					t.Fatalf("round %d: listening on %s, was %s", round, ln.Addr(), addr)
				}
				if err := h.Close(); err != nil {
					t.Fatalf("round %d: Close after Listen: %v", round, err)
				}
			}
			ln.Close()
		})
	}
}

// Close lets the port go.
func TestCloseFreesThePort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h, err := Stop(ln, func() { ln.Close() })
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := net.Listen("tcp", h.Addr().String())
	if err != nil {
		t.Fatalf("the port after Close: %v", err)
	}
	again.Close()
	if _, err := h.Listen(); err == nil {
		t.Fatal("a closed hold listened")
	}
}
