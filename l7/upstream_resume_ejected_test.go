package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
)

// A blob body that breaks on the only node left in rotation resumes on a
// node passive ejection took out whose probes still pass, as Pick sends
// it requests when no other node serves: the download was cut instead,
// with a healthy node there to finish it. Found from the outside: with
// two fixture nodes, one ejected for cutting blobs, then the other
// cutting a pull, curl got 1 MB of a 3 MB blob.
func TestResumeFallsBackOnAnEjectedNode(t *testing.T) {
	const size = 1000
	var breakX, breakY atomic.Bool
	switched := func(breaks *atomic.Bool) rawServe {
		return func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
			return rawBlobNode(size, breaks.Load())(c, br, r)
		}
	}
	x, y := startRaw(t, switched(&breakX)), startRaw(t, switched(&breakY))
	addr, up := haProxy(t, io.Discard, 0, &haNode{addr: x.addr}, &haNode{addr: y.addr})
	breakX.Store(true)
	for i := 0; i < 64 && !slices.Contains(ejected(up.Set()), x.addr); i++ {
		if n, err := sendRaw(addr, fmt.Sprintf("/v2/app/blobs/sha256:%064x", i)); err != nil || n != size {
			t.Fatalf("with %s breaking blobs: %d bytes, %v", x.addr, n, err)
		}
	}
	if !slices.Contains(ejected(up.Set()), x.addr) {
		t.Fatalf("%s, breaking every blob %s served whole, was not ejected", x.addr, y.addr)
	}
	// x recovers but stays ejected for 10 s; y now breaks.
	breakX.Store(false)
	breakY.Store(true)
	n, err := sendRaw(addr, "/v2/app/blobs/sha256:"+fmt.Sprintf("%064x", 999))
	if err != nil || n != size {
		t.Fatalf("blob broken on %s with %s ejected but up: %d of %d bytes, %v", y.addr, x.addr, n, size, err)
	}
}
