package l7

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/nexmux/nexmux/upstream"
)

// A dial that fails on nexmux's own host (out of descriptors, local ports)
// says nothing of the node: the request fails with a retryable 5xx, but no
// node is marked down. Marked down, every node would go down together
// while nexmux is short of descriptors, and their downloads under way be
// cut. A refused connection still marks its node down.
func TestLocalDialFailureLeavesNodesUp(t *testing.T) {
	ok := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }
	nodes := []*haNode{startNode(t, ok), startNode(t, ok)}
	var fail atomic.Pointer[syscall.Errno]
	tr := NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if e := fail.Load(); e != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", *e)}
		}
		return dial(ctx, network, addr)
	}
	addr, up := haProxyConfig(t, io.Discard, 0, "team-a", Config{Transport: tr}, "http://"+nodes[0].addr, "http://"+nodes[1].addr)
	downs := func() (n int) {
		for _, hn := range nodes {
			if up.Set().ByHost(hn.addr).State() == upstream.Down {
				n++
			}
		}
		return n
	}
	waitUntil(t, "both nodes up", func() bool { return downs() == 0 })

	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.EADDRNOTAVAIL} {
		fail.Store(&e)
		tr.CloseIdleConnections()
		resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil)
		// Nexus is fine: the answer must not send its operators to it.
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(body, `"errors"`) || strings.Contains(body, "Nexus is not reachable") {
			t.Errorf("%v: %s (Retry-After %q) %s, want a JSON 503 with Retry-After that blames nexmux, not Nexus", e, resp.Status, resp.Header.Get("Retry-After"), body)
		}
		if n := downs(); n != 0 {
			t.Fatalf("%v: %d nodes marked down by nexmux's own dial failure", e, n)
		}
	}
	refused := syscall.ECONNREFUSED
	fail.Store(&refused)
	send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil)
	if n := downs(); n == 0 {
		t.Fatal("a refused connection marked no node down")
	}
	fail.Store(nil)
	waitUntil(t, "nodes back after the probes", func() bool { return downs() == 0 })
	if resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("once dials work: %s %s", resp.Status, body)
	}
}

// dialFailer is a transport whose dials to the hosts set in it fail on
// "this host" with their errno.
type dialFailer struct {
	*http.Transport
	fail   sync.Map // host:port -> syscall.Errno
	failed atomic.Int64
}

func newDialFailer(t *testing.T) *dialFailer {
	d := &dialFailer{Transport: NewTransport()}
	t.Cleanup(d.CloseIdleConnections)
	dial := d.DialContext
	d.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if e, ok := d.fail.Load(addr); ok {
			d.failed.Add(1)
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", e.(syscall.Errno))}
		}
		return dial(ctx, network, addr)
	}
	return d
}

// Out of local ports to one node (EADDRNOTAVAIL: Linux picks a connect's
// port per destination) is no reason to fail a request another node can
// serve: nothing was sent, so it moves on, and marks no node down.
func TestLocalDialFailureMovesOn(t *testing.T) {
	ok := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }
	nodes := []*haNode{startNode(t, ok), startNode(t, ok)}
	tr := newDialFailer(t)
	addr, up := haProxyConfig(t, io.Discard, 0, "team-a", Config{Transport: tr.Transport}, "http://"+nodes[0].addr, "http://"+nodes[1].addr)
	waitUntil(t, "both nodes up", func() bool {
		return up.Set().ByHost(nodes[0].addr).State() != upstream.Down && up.Set().ByHost(nodes[1].addr).State() != upstream.Down
	})
	tr.fail.Store(nodes[0].addr, syscall.EADDRNOTAVAIL)
	for i := range 20 {
		if resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %d: %s %s, want it served by the other node", i, resp.Status, body)
		}
	}
	if st := up.Set().ByHost(nodes[0].addr).State(); st == upstream.Down {
		t.Fatal("nexmux's own dial failure marked its node down")
	}
}

// An upload follow-up whose node is found by asking the nodes, while
// nexmux cannot dial any of them, gets a retryable 503: no node said it
// does not know the session, so 404 BLOB_UPLOAD_UNKNOWN, which makes the
// client start the layer's upload again, would be false.
func TestLocalDialFailureWhileAskingIsNoUnknownUpload(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/blobs/uploads/u1") {
			w.WriteHeader(http.StatusAccepted)
		}
	}
	nodes := []*haNode{startNode(t, h), startNode(t, h)}
	tr := newDialFailer(t)
	addr, up := haProxyConfig(t, io.Discard, 0, "team-a", Config{Transport: tr.Transport}, "http://"+nodes[0].addr, "http://"+nodes[1].addr)
	waitUntil(t, "both nodes writable", func() bool {
		return up.Set().ByHost(nodes[0].addr).State() == upstream.Writable && up.Set().ByHost(nodes[1].addr).State() == upstream.Writable
	})
	for _, n := range nodes {
		tr.fail.Store(n.addr, syscall.EMFILE)
	}
	resp, body := send(t, addr, http.MethodPatch, "/v2/app/blobs/uploads/u1", strings.NewReader("chunk"))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"UNAVAILABLE"`) {
		t.Fatalf("PATCH while no node can be dialled: %s Retry-After %q %s, want a retryable 503", resp.Status, resp.Header.Get("Retry-After"), body)
	}
	for _, n := range nodes {
		tr.fail.Delete(n.addr)
	}
	if resp, body := send(t, addr, http.MethodPatch, "/v2/app/blobs/uploads/u1", strings.NewReader("chunk")); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH once dials work: %s %s", resp.Status, body)
	}
}

// A blob download resumed on a node nexmux cannot dial (out of
// descriptors) counts nothing against that node: every download broken
// while nexmux is short of descriptors would otherwise eject the node it
// tried next, five of them every node.
func TestLocalDialFailureOnResumeEjectsNone(t *testing.T) {
	blob := []byte(strings.Repeat("0123456789abcdef", 8<<10))
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	var first atomic.Pointer[string]
	h := func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		if r.Context().Value(http.LocalAddrContextKey).(net.Addr).String() != *first.Load() {
			w.Write(blob)
			return
		}
		w.Write(blob[:len(blob)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	nodes := []*haNode{startNode(t, h), startNode(t, h)}
	tr := newDialFailer(t)
	addr, up := haProxyConfig(t, io.Discard, 0, "team-a", Config{Transport: tr.Transport}, "http://"+nodes[0].addr, "http://"+nodes[1].addr)
	ns, _ := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest)
	a, b := ns[0].Host, ns[1].Host
	first.Store(&a)
	tr.fail.Store(b, syscall.EMFILE)
	for range 5 { // passive ejection: 5 in a row
		send(t, addr, http.MethodGet, "/v2/app/blobs/"+digest, nil)
	}
	if tr.failed.Load() == 0 {
		t.Fatal("no download was resumed on the node nexmux cannot dial")
	}
	for _, ni := range up.Set().Table() {
		if ni.Node == b && !ni.EjectedUntil.IsZero() {
			t.Fatalf("node %s ejected for nexmux's own dial failures: %s", b, ni.LastError)
		}
	}
}
