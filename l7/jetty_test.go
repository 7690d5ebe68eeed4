package l7

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures"
)

// Jetty closes a connection idle for 30 s (fixtures.JettyIdleTimeout). A
// pooled connection to Nexus must be dropped well before that: reused just
// as Jetty closes it, it fails the request it carries, and an upload's body
// cannot be sent again. A margin of seconds covers the clocks of the two
// ends starting apart (last byte written here, last byte read there).
func TestUpstreamIdleBelowJettys(t *testing.T) {
	const margin = 5 * time.Second
	if got := NewTransport().IdleConnTimeout; got <= 0 || got > fixtures.JettyIdleTimeout-margin {
		t.Fatalf("upstream IdleConnTimeout %v: want set and at most Jetty's %v less 5s", got, fixtures.JettyIdleTimeout)
	}
}

// Jetty serves a Nexus node's requests with one pool of threads
// (fixtures.JettyWorkerThreads), shared by every connector and the UI.
// nexmux's default share of one node stays well below it, so a replica
// whose clients stall uploads or stop reading leaves threads for Nexus's
// other users (TestUpstreamPoolOverflow: requests beyond it never reach
// the node).
func TestUpstreamMaxConnsBelowJettyThreads(t *testing.T) {
	if DefaultUpstreamMaxConns <= 0 || DefaultUpstreamMaxConns > fixtures.JettyWorkerThreads/2 {
		t.Fatalf("DefaultUpstreamMaxConns %d: want at most half of Jetty's %d threads", DefaultUpstreamMaxConns, fixtures.JettyWorkerThreads)
	}
}

// Jetty answers a request whose headers exceed its 8 KiB limit with 431.
// That is the request's fault, not the node's: it goes to no other node,
// reaches the client as Nexus said it, and ejects no node however often.
func TestJettyHeaderLimitMovesNoFurtherAndEjectsNone(t *testing.T) {
	tooLarge := func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/repository/") {
			w.WriteHeader(http.StatusRequestHeaderFieldsTooLarge)
		}
	}
	a, b := startNode(t, tooLarge), startNode(t, tooLarge)
	addr, up := haProxy(t, io.Discard, 0, a, b)
	const n = 20
	for range n {
		if resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("%s %q, want Nexus's 431", resp.Status, body)
		}
	}
	if got := a.hits.Load() + b.hits.Load(); got != n {
		t.Fatalf("Nexus saw %d requests for %d sent: a 431 was tried on another node", got, n)
	}
	if ok, _ := up.Set().Readable(false); !ok {
		t.Fatal("431s made no node readable")
	}
	for _, nd := range up.Set().Nodes() {
		if !up.Set().Takes(nd, false) {
			t.Fatalf("node %s takes no reads after the 431s: %+v", nd.Host, up.Set().Table())
		}
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	a.h.Store(&ok)
	b.h.Store(&ok)
	aBefore, bBefore := a.hits.Load(), b.hits.Load()
	// By digest, so each read's node is its digest's rendezvous node among
	// those not ejected: by tag, the least-loaded draw follows answer
	// times, and one slow 431 on a loaded machine starves its node.
	for i := range n {
		if resp, body := send(t, addr, http.MethodGet, fmt.Sprintf("/v2/app/manifests/sha256:%064x", i), nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("after the 431s: %s %q", resp.Status, body)
		}
	}
	if a.hits.Load() == aBefore || b.hits.Load() == bBefore {
		t.Fatalf("a node was ejected over 431s: hits a +%d, b +%d", a.hits.Load()-aBefore, b.hits.Load()-bBefore)
	}
}
