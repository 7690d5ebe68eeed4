package l7

import (
	"fmt"
	"io"
	"testing"
)

// A node that breaks every blob's body mid-way (a bad blob store mount on
// that node alone) while another node serves the rest whole is broken,
// and is ejected as a node that resets every request is: its blob
// answers' headers, each a 200, must not clear the breaks of the pulls
// before, or the count never reaches five in a row and every pull that
// starts on it costs a resume, forever.
func TestHANodeBreakingEveryBlobIsEjected(t *testing.T) {
	const size = 1000
	serve := func(breaks bool) rawServe { return rawBlobNode(size, breaks) }
	bad, good := startRaw(t, serve(true)), startRaw(t, serve(false))
	addr, up := haProxy(t, io.Discard, 0, &haNode{addr: bad.addr}, &haNode{addr: good.addr})
	ejectWith(t, up, bad.addr, func(i int) {
		// Blobs of every digest: about half start on the breaking node.
		if n, err := sendRaw(addr, fmt.Sprintf("/v2/app/blobs/sha256:%064x", i)); err != nil || n != size {
			t.Fatalf("with one node breaking blobs: %d bytes, %v", n, err)
		}
	})
}
