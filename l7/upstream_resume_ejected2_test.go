package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/upstream"
)

// switchNode modes: how a switchNode answers a blob (and, frozen, its
// status probes).
const (
	blobWhole      = iota
	blobBreak      // a quarter of the body, then the connection closes
	blobBreakKill  // blobBreak, and the listener closes (a crash)
	blobFrozen     // nothing answers any more, probes included
	blobFrozenHalf // headers and half the body, then frozen as blobFrozen
	blobNoRange    // the whole blob, whatever Range asks
)

// switchNode serves zero-byte blobs of size (and their ranges) as its mode
// says; a frozen one holds every request until the test ends.
type switchNode struct {
	addr string
	mode atomic.Int32
	ln   net.Listener
}

func startSwitchNode(t *testing.T, size int) *switchNode {
	t.Helper()
	n := &switchNode{ln: testnet.Listen(t)}
	n.addr = n.ln.Addr().String()
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); n.ln.Close() })
	go func() {
		for {
			c, err := n.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					mode := n.mode.Load()
					if mode == blobFrozen || mode == blobFrozenHalf && !strings.Contains(r.URL.Path, "/blobs/") {
						<-stop
						return
					}
					if !strings.Contains(r.URL.Path, "/blobs/") {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
						continue
					}
					from := 0
					if rg := r.Header.Get("Range"); rg != "" && mode != blobNoRange {
						fmt.Sscanf(rg, "bytes=%d-", &from)
						fmt.Fprintf(c, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n\r\n", from, size-1, size, size-from)
					} else {
						fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
					}
					switch mode {
					case blobBreak, blobBreakKill:
						c.Write(make([]byte, (size-from)/4))
						if mode == blobBreakKill {
							n.ln.Close()
						}
						return
					case blobFrozenHalf:
						c.Write(make([]byte, (size-from)/2))
						n.mode.Store(blobFrozen)
						<-stop
						return
					}
					c.Write(make([]byte, size-from))
				}
			}()
		}
	}()
	return n
}

// A download resumed on a node that passive ejection keeps out (every
// other node down or broken on it) moves on to a second such node when
// the first is found down, before its answer or in its body, as it does
// from nodes in rotation: it waited out the 300 s header or body read
// timeout on the frozen node instead, a healthy node there to finish it.
// Likewise from the last node in rotation to an ejected one.
func TestResumeMovesOnAcrossEjectedNodes(t *testing.T) {
	const size = 1 << 20
	digest := "sha256:" + strings.Repeat("cd", 32)
	key := "team-a@" + digest
	for _, tc := range []struct {
		name string
		// modes once the pull began: of the node it starts on, the
		// node resumed on first, and the one after
		first, other, second int32
		ejected              int // how many nodes are ejected (the last ones)
	}{
		// The first node stays up: its break leaves it in rotation, so
		// the ejected nodes come in as the last resort.
		{"frozen before its answer", blobBreak, blobFrozen, blobWhole, 2},
		// The first node crashes: the ejected nodes are all that serve,
		// and the one resumed on freezes mid-body.
		{"frozen mid-body", blobBreakKill, blobFrozenHalf, blobWhole, 2},
		// The ejected node resumed on first ignores Range: passed over
		// for the next, which breaks, then taken from its start.
		{"whole blob passed over", blobBreak, blobNoRange, blobBreak, 2},
		// The last node in rotation freezes before its answer: on to
		// the ejected one.
		{"last in rotation frozen", blobBreak, blobFrozen, blobWhole, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := []*switchNode{startSwitchNode(t, size), startSwitchNode(t, size), startSwitchNode(t, size)}
			byAddr := map[string]*switchNode{}
			var ha []*haNode
			for _, n := range nodes {
				byAddr[n.addr] = n
				ha = append(ha, &haNode{addr: n.addr})
			}
			addr, up := haProxy(t, io.Discard, 0, ha...)
			set := up.Set()
			for _, n := range nodes[3-tc.ejected:] {
				for range 5 {
					set.ReportResult(set.ByHost(n.addr), false, "test: ejected")
				}
			}
			if e := ejected(set); len(e) != tc.ejected {
				t.Fatalf("ejected %v, want %d nodes", e, tc.ejected)
			}
			// The order the download goes through the nodes.
			order, err := set.Pick(upstream.ReadDigest, key)
			if err != nil {
				t.Fatal(err)
			}
			order = append(order, set.Ejected(upstream.ReadDigest, key)...)
			for i, m := range []int32{tc.first, tc.other, tc.second} {
				byAddr[order[i].Host].mode.Store(m)
			}

			type result struct {
				n   int
				err error
			}
			done := make(chan result, 1)
			start := time.Now()
			go func() {
				n, err := sendRaw(addr, "/v2/app/blobs/"+digest)
				done <- result{n, err}
			}()
			select {
			case r := <-done:
				if r.err != nil || r.n != size {
					t.Fatalf("%d of %d bytes, %v", r.n, size, r.err)
				}
				t.Logf("whole after %v", time.Since(start).Round(time.Millisecond))
			case <-time.After(20 * time.Second):
				t.Fatalf("no whole download 20 s after the pull began: the resume waits on the frozen node %s while %s could finish it", order[1].Host, order[2].Host)
			}
		})
	}
}
