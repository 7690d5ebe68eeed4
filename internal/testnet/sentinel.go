package testnet

import (
	"net"
	"sync/atomic"
	"testing"
)

// Sentinel listens on a loopback port that must never be dialled and counts
// the connections it gets: a proxy that resolved or dialled a refused target
// would land here. It closes with the test.
func Sentinel(t testing.TB) (port int, hits *atomic.Int64) {
	t.Helper()
	ln := Listen(t)
	hits = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, hits
}
