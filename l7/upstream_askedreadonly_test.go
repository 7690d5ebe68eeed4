package l7

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/upstream"
)

// A chunk whose node refuses its connection goes on at the node found by
// asking (Nexus sharing sessions). When that node is read-only and no node
// takes writes, the chunk is refused before its body is read, as when the
// probes had found the upload's node down first: not streamed to a frozen
// node (a layer's chunk may be 1 GiB).
func TestHAUploadAskedAfterRefusalIsNotStreamedToAFrozenNode(t *testing.T) {
	_, nodes := haCluster(t, 2, func(c *fixtures.Config) { c.SharedUploads = true })
	// Probes when kicked only: the upload's node is found down by its
	// chunk's refused connection, not by a probe. The chunk must meet a
	// refused dial (closedTo).
	tr, closedTo := trackingTransport(t)
	addr, up := haProxyProbing(t, io.Discard, 0, haRepo, Config{Transport: tr}, time.Hour, nodeURLs(nodes)...)
	u, tagged := openUpload(t, addr, up)
	opened := nodeAt(nodes, tagged.Host)
	other := otherNode(nodes, opened)
	other.SetReadOnly(true)
	spec, err := upstream.ParseSpec(nodeURLs(nodes), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the other node read-only", func() bool {
		if err := up.Set().Update(spec); err != nil { // the same nodes: a probe round
			t.Fatal(err)
		}
		return up.Set().ByHost(other.Addr()).State() == upstream.ReadOnly
	})
	time.Sleep(200 * time.Millisecond) // a round still kicked ends
	if err := opened.SetDown(true); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "nexmux's connections to the upload's node closed", closedTo(opened.Addr()))
	if s := up.Set().ByHost(opened.Addr()).State(); s != upstream.Writable {
		t.Fatalf("the upload's node is %s before its chunk: the probes found it", s)
	}
	other.ResetRequests()
	resp, body := sendChunk(t, addr, u.RequestURI())
	if got, st := patched(other); got {
		t.Errorf("the chunk was sent to the read-only node (its answer: %d)", st)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "accepts no writes") {
		t.Fatalf("PATCH: %s %s, want nexmux's 503 saying no node accepts writes", resp.Status, body)
	}
}

// Asked which node knows a shared session, a read-only node may answer
// first; the chunk goes to one that takes writes and knows it too (here
// slower to answer), not to the frozen one, which refuses it after its
// body is sent.
func TestHAUploadAskedPrefersAWritableNode(t *testing.T) {
	_, nodes := haCluster(t, 3, func(c *fixtures.Config) { c.SharedUploads = true })
	addr, up := haProxyURLs(t, io.Discard, 0, haRepo, nodeURLs(nodes)...)
	u, tagged := openUpload(t, addr, up)
	opened := nodeAt(nodes, tagged.Host)
	var frozen, slow *fixtures.Node
	for _, n := range nodes {
		switch {
		case n == opened:
		case frozen == nil:
			frozen = n
		default:
			slow = n
		}
	}
	frozen.SetReadOnly(true)
	slow.SetSlow(300*time.Millisecond, 0)
	if err := opened.SetDown(true); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the upload's node down, the other read-only", func() bool {
		return up.Set().ByHost(opened.Addr()).State() == upstream.Down && up.Set().ByHost(frozen.Addr()).State() == upstream.ReadOnly
	})
	frozen.ResetRequests()
	resp, body := sendChunk(t, addr, u.RequestURI())
	if got, st := patched(frozen); got {
		t.Errorf("the chunk was sent to the read-only node (its answer: %d)", st)
	}
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH: %s %s, want 202 from the writable node that knows the session", resp.Status, body)
	}
}
