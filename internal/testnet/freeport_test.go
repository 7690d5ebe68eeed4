package testnet

import (
	"net"
	"strconv"
	"testing"
)

// FreePort's ports are free, distinct, and below the ephemeral range that
// ":0" listeners draw from.
func TestFreePort(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 50 {
		p := FreePort(t)
		if p >= low || p < 1024 || seen[p] {
			t.Fatalf("port %d: want a new one in 1024-%d", p, low-1)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		ln.Close()
	}
	// A port taken is skipped.
	p := FreePort(t)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
	if err == nil {
		defer ln.Close()
		if q := FreePort(t); q == p+1 {
			t.Fatalf("FreePort handed out %d, which is listened on", q)
		}
	}
}
