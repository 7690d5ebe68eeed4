package l7

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/upstream"
)

// A download that broke on A gives A's place and in-flight count back as
// the resume leaves A, before B has answered it: A's response is over, and
// a place held there while B's answer is awaited (up to the header
// timeout, for a busy B) keeps others off A, and a removed A's drain
// waiting, for nothing.
func TestResumeLeavesTheBrokenNodeBeforeTheAnswer(t *testing.T) {
	blob, digest := resumeBlob()
	var cutter atomic.Pointer[string]
	release := make(chan struct{})
	free := sync.OnceFunc(func() { close(release) })
	t.Cleanup(free)
	cut := cuttingBlobNode(blob, &cutter, nil)
	var asked atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			// The resume: answered once released.
			asked.Add(1)
			<-release
		}
		cut(w, r)
	}
	a, b := startNode(t, h), startNode(t, h)
	addr, up := haProxy(t, io.Discard, 1, a, b)
	if ns, _ := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest); ns[0].Host != a.addr {
		a, b = b, a
	}
	cutter.Store(&a.addr)
	na := up.Set().ByHost(a.addr)
	got := sendLater(teamRequest(addr, http.MethodGet, "/v2/app/blobs/"+digest, nil))
	waitUntil(t, "the resume asked of B", func() bool { return asked.Load() > 0 })
	p, _ := up.pools.m.Load(a.addr)
	left := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.taken == 0 && na.InFlight() == 0
	}
	for deadline := time.Now().Add(10 * time.Second); !left(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			p.mu.Lock()
			taken := p.taken
			p.mu.Unlock()
			t.Fatalf("while B's answer to the resume is awaited, A (whose response broke) still holds %d place(s) and %d request(s) in flight; want 0 and 0", taken, na.InFlight())
		}
	}
	free()
	if g := <-got; g.resp == nil || g.resp.StatusCode != http.StatusOK || g.body != string(blob) {
		t.Fatalf("blob: %v, %d bytes of %d", g.resp != nil, len(g.body), len(blob))
	}
}
