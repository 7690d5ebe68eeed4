package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
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
	serve := func(breaks bool) rawServe {
		return func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
			io.Copy(io.Discard, r.Body)
			if !strings.Contains(r.URL.Path, "/blobs/") {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
				return true
			}
			from := 0
			if rg := r.Header.Get("Range"); rg != "" {
				fmt.Sscanf(rg, "bytes=%d-", &from)
				fmt.Fprintf(c, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n\r\n", from, size-1, size, size-from)
			} else {
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
			}
			if breaks {
				c.Write(make([]byte, (size-from)/4)) // then the connection closes
				return false
			}
			c.Write(make([]byte, size-from))
			return true
		}
	}
	bad, good := startRaw(t, serve(true)), startRaw(t, serve(false))
	addr, up := haProxy(t, io.Discard, 0, &haNode{addr: bad.addr}, &haNode{addr: good.addr})
	for i := 0; i < 200 && len(ejected(up.Set())) == 0; i++ {
		// Blobs of every digest: about half start on the breaking node.
		if n, err := sendRaw(addr, fmt.Sprintf("/v2/app/blobs/sha256:%064x", i)); err != nil || n != size {
			t.Fatalf("with one node breaking blobs: %d bytes, %v", n, err)
		}
	}
	if e := ejected(up.Set()); len(e) != 1 || e[0] != bad.addr {
		t.Fatalf("after 200 pulls, ejected %v, want the node breaking every blob (%s) alone", e, bad.addr)
	}
}
