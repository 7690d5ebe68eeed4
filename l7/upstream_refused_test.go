package l7

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/upstream"
)

// A refused connection on real traffic marks its node down at once
// (README, Nodes), a blob resume's included: the node that refuses it is
// not left writable in the table, taking further requests and resumes,
// until a probe happens to ask it.
func TestResumeRefusedMarksTheNodeDown(t *testing.T) {
	blob, digest := resumeBlob()
	var cutter atomic.Pointer[string]
	h := cuttingBlobNode(blob, &cutter, nil)
	var probed [3]atomic.Int64
	var nodes [3]string
	var closers [3]func()
	for i := range 3 {
		nodes[i], closers[i] = startClosableNode(t, func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/status/writable") {
				defer probed[i].Add(1)
			}
			h(w, r)
		})
	}
	// Probes once, at the start: only the traffic can find a node gone.
	addr, up := haProxyProbing(t, io.Discard, 0, "team-a", Config{}, time.Hour, "http://"+nodes[0], "http://"+nodes[1], "http://"+nodes[2])
	waitUntil(t, "the first probe round", func() bool { return probed[0].Load() > 0 && probed[1].Load() > 0 && probed[2].Load() > 0 })
	time.Sleep(100 * time.Millisecond) // the probes' answers read
	ns, err := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest)
	if err != nil || len(ns) != 3 {
		t.Fatalf("pick: %v %v", ns, err)
	}
	// The blob's node cuts it, and the next in its order, where the
	// resume goes first, refuses connections.
	first := ns[0].Host
	cutter.Store(&first)
	refusing := ns[1]
	for i, a := range nodes {
		if a == refusing.Host {
			closers[i]()
		}
	}
	resp, body := send(t, addr, http.MethodGet, "/v2/app/blobs/"+digest, nil)
	if resp.StatusCode != http.StatusOK || body != string(blob) {
		t.Fatalf("%s, %d bytes (the blob is %d); want the whole blob, resumed on the third node", resp.Status, len(body), len(blob))
	}
	if s := refusing.State(); s != upstream.Down {
		t.Fatalf("the node that refused the resume's connection is %s, want down", s)
	}
}

// The same for the question an untagged upload follow-up asks every node:
// a node that refuses it is down.
func TestAskRefusedMarksTheNodeDown(t *testing.T) {
	_, nodes := haCluster(t, 3)
	addr, up := haProxyProbing(t, io.Discard, 0, haRepo, Config{}, time.Hour, nodeURLs(nodes)...)
	waitUntil(t, "the first probe round", func() bool {
		for _, n := range nodes {
			if !slices.ContainsFunc(n.Requests(), func(r fixtures.Request) bool { return strings.HasSuffix(r.Path, "/status/writable") }) {
				return false
			}
		}
		return true
	})
	time.Sleep(100 * time.Millisecond) // the probes' answers read
	u, tagged := openUpload(t, addr, up)
	var gone *fixtures.Node
	for _, n := range nodes {
		if n.Addr() != tagged.Host {
			gone = n
			break
		}
	}
	if err := gone.SetDown(true); err != nil {
		t.Fatal(err)
	}
	// The node that knows the session answers late: its answer ends the
	// wait, and a question not yet sent by then is never sent (nor refused).
	nodeAt(nodes, tagged.Host).SetSlow(time.Second, 0)
	// Without its tag: the follow-up asks every node.
	resp, body := sendAuth(t, addr, http.MethodGet, u.Path)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("untagged upload status: %s %s", resp.Status, body)
	}
	if s := up.Set().ByHost(gone.Addr()).State(); s != upstream.Down {
		t.Fatalf("the node that refused the question's connection is %s, want down", s)
	}
}

// startClosableNode serves h on a loopback address, and returns it with a
// func that closes the listener and connections: from then on its
// connections are refused.
func startClosableNode(t *testing.T, h http.HandlerFunc) (string, func()) {
	t.Helper()
	ln := testnet.Listen(t)
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), func() { srv.Close() }
}
