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

// A blob whose body breaks on every node (a proxy repository's remote
// that breaks off, a blob store file cut short) is the blob's, not a
// node's, as a 5xx every node gives is: each pull counted the break on the
// node it resumed on, whose count no answer of its own reset, so a few
// pulls of one such blob ejected every node but the one the blob starts
// on, and moved every client's traffic onto it for 10 s and up. A break
// that another node's rest makes whole still counts.
func TestHABlobBrokenOnEveryNodeEjectsNone(t *testing.T) {
	const size = 1000
	digest := "sha256:" + strings.Repeat("ab", 32)
	serve := func(breaks bool) rawServe { return rawBlobNode(size, breaks) }
	a, b := startRaw(t, serve(true)), startRaw(t, serve(true))
	addr, up := haProxy(t, io.Discard, 0, &haNode{addr: a.addr}, &haNode{addr: b.addr})
	for range 10 {
		if n, err := sendRaw(addr, "/v2/app/blobs/"+digest); err == nil {
			t.Fatalf("a blob broken on every node came whole (%d bytes)", n)
		}
	}
	if e := ejected(up.Set()); len(e) != 0 {
		t.Errorf("a blob every node breaks on ejected %v", e)
	}
	if resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("another request, which every node answers: %s %s", resp.Status, body)
	}

	bad, good := startRaw(t, serve(true)), startRaw(t, serve(false))
	addr, up = haProxy(t, io.Discard, 0, &haNode{addr: bad.addr}, &haNode{addr: good.addr})
	broke := func() bool {
		for _, ni := range up.Set().Table() {
			if ni.Node == bad.addr && strings.Contains(ni.LastError, "blob body broke") {
				return true
			}
		}
		return false
	}
	for i := 0; i < 64 && !broke(); i++ {
		// Blobs of every digest: some start on the breaking node.
		if n, err := sendRaw(addr, fmt.Sprintf("/v2/app/blobs/sha256:%064x", i)); err != nil || n != size {
			t.Fatalf("with one node breaking blobs: %d bytes, %v", n, err)
		}
	}
	if !broke() {
		t.Fatal("the break of a blob another node served whole was not held against the node that broke it")
	}
}

// rawBlobNode answers any blob (and its ranges) with size zero bytes, the
// connection closed a quarter of the way into each body when breaks is
// set, and anything else with a 2-byte "ok".
func rawBlobNode(size int, breaks bool) rawServe {
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
