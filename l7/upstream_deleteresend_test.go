package l7

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
)

// writeNode answers status probes, and a write, once it has read it, by
// closing the connection unanswered (Nexus carried it out, then crashed or
// the connection broke); with freeze set, the first write any node sharing
// it gets freezes that node instead, probes included, until the test ends,
// and later ones get a 202.
type writeNode struct {
	addr   string
	freeze *atomic.Bool
	got    atomic.Int64 // writes read
	frozen atomic.Bool
}

func startWriteNode(t *testing.T, freeze *atomic.Bool) *writeNode {
	t.Helper()
	n := &writeNode{freeze: freeze}
	ln := testnet.Listen(t)
	n.addr = ln.Addr().String()
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
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
					io.Copy(io.Discard, r.Body)
					if n.frozen.Load() {
						<-stop
						return
					}
					if !strings.Contains(r.URL.Path, "/repository/") {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
						continue
					}
					n.got.Add(1)
					if n.freeze == nil {
						return
					}
					if n.freeze.CompareAndSwap(false, true) {
						n.frozen.Store(true)
						<-stop
						return
					}
					io.WriteString(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
				}
			}()
		}
	}()
	return n
}

// A DELETE that reached a node is not sent to another when the node
// breaks the connection before its answer, or is found down while nexmux
// waits for it: Nexus may have carried it out, and the second node then
// answers 404 MANIFEST_UNKNOWN for a manifest the client's own DELETE
// removed (seen with the fixture: the first node's log had the 202), or,
// the first node frozen with the DELETE queued, deletes after the second
// one's 202 a manifest pushed meanwhile. The client gets a 502 and
// decides. Bodiless POSTs (a new upload session, a cross-repository
// mount) still move: a second session leaves the first unused, and a
// mount is the same mount again.
func TestDeleteSentToOneNodeOnly(t *testing.T) {
	const manifest = "/v2/app/manifests/sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name, method, path string
		freeze             bool
		want               int64 // writes the nodes got in all
	}{
		{"DELETE reset", http.MethodDelete, manifest, false, 1},
		{"DELETE node found down", http.MethodDelete, manifest, true, 1},
		{"upload POST reset", http.MethodPost, "/v2/app/blobs/uploads/", false, 2},
		{"mount POST reset", http.MethodPost, "/v2/app/blobs/uploads/?mount=sha256:" + strings.Repeat("ab", 32) + "&from=lib", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var freeze *atomic.Bool
			if tc.freeze {
				freeze = new(atomic.Bool)
			}
			a, b := startWriteNode(t, freeze), startWriteNode(t, freeze)
			addr, _ := haProxy(t, io.Discard, 0, &haNode{addr: a.addr}, &haNode{addr: b.addr})
			tr := &http.Transport{DisableKeepAlives: true, ResponseHeaderTimeout: 15 * time.Second}
			resp, err := tr.RoundTrip(teamRequest(addr, tc.method, tc.path, nil))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := a.got.Load() + b.got.Load(); got != tc.want {
				t.Errorf("%s: the nodes got it %d times (%s), want %d", tc.method, got, resp.Status, tc.want)
			}
			if tc.want == 1 && resp.StatusCode != http.StatusBadGateway {
				t.Errorf("%s sent once: %s, want the 502", tc.method, resp.Status)
			}
		})
	}
}
