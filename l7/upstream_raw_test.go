package l7

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nexmux/nexmux/internal/testnet"
)

// rawNode is a Nexus stand-in that writes its answers byte by byte, for
// the answers net/http's server would never send. Status probes get an
// empty 200.
type rawNode struct {
	addr  string
	reqs  atomic.Int64 // requests for /repository/
	conns atomic.Int64 // connections accepted
}

// rawServe answers one /repository/ request on c (its body unread); false
// closes c.
type rawServe func(c net.Conn, br *bufio.Reader, r *http.Request) bool

func startRaw(t *testing.T, serve rawServe) *rawNode {
	t.Helper()
	n := &rawNode{}
	ln := testnet.Listen(t)
	n.addr = ln.Addr().String()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if !strings.Contains(r.URL.Path, "/repository/") {
						io.Copy(io.Discard, r.Body)
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
						continue
					}
					n.reqs.Add(1)
					if !serve(c, br, r) {
						return
					}
				}
			}()
		}
	}()
	return n
}

// nothingHeld waits until no request holds one of up's
// --upstream-max-conns places or counts in a node's in-flight.
func nothingHeld(t *testing.T, up *Upstreams) {
	t.Helper()
	waitUntil(t, "every place and in-flight count given back", func() bool {
		taken := 0
		up.pools.m.Range(func(_ string, np *nodePool) bool {
			np.mu.Lock()
			taken += np.taken
			np.mu.Unlock()
			return true
		})
		for _, n := range up.Set().Nodes() {
			taken += int(n.InFlight())
		}
		return taken == 0
	})
}
