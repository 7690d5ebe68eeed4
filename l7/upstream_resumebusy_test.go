package l7

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/upstream"
)

// A node whose status probes time out while it answers blob resumes is
// busy, not down (README: a probe that times out while the node gives real
// requests their answers counts for nothing): a resume is a real request.
// Found down, it would cut the downloads it took over, as when another
// node died and its downloads all resumed there.
func TestNodeAnsweringResumesIsBusyNotDown(t *testing.T) {
	blob, _ := resumeBlob()
	var cutter, busy atomic.Pointer[string]
	cut := "/cut/"
	h := func(w http.ResponseWriter, r *http.Request) {
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()
		if !strings.Contains(r.URL.Path, "/repository/") {
			if b := busy.Load(); b != nil && local == *b {
				// Busy: its status answers after the probe gave up.
				select {
				case <-time.After(1500 * time.Millisecond):
				case <-r.Context().Done():
				}
			}
			return
		}
		if serveRange(w, r, blob) {
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		if c := cutter.Load(); c != nil && local == *c && strings.Contains(r.URL.Path, cut) {
			w.Write(blob[:len(blob)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		w.Write(blob)
	}
	n1, n2 := startNode(t, h), startNode(t, h)
	addr, up := haProxy(t, io.Discard, 0, n1, n2)
	// Two blobs whose node is the same (a): it cuts one, every time (each
	// resumes on b), and serves the other whole, which keeps a's run of
	// failures short of an ejection, so b takes nothing but resumes.
	var a, b string
	var blobs []string
	for i := 0; len(blobs) < 2; i++ {
		d := fmt.Sprintf("sha256:%064x", i)
		ns, err := up.Set().Pick(upstream.ReadDigest, "team-a@"+d)
		if err != nil {
			t.Fatal(err)
		}
		if a == "" {
			a, b = ns[0].Host, ns[1].Host
		}
		if ns[0].Host == a {
			blobs = append(blobs, d)
		}
	}
	cutter.Store(&a)
	busy.Store(&b)
	resumes := 0
	for end := time.Now().Add(3500 * time.Millisecond); time.Now().Before(end); {
		resp, body := send(t, addr, http.MethodGet, "/v2/cut/blobs/"+blobs[0], nil)
		if resp.StatusCode != http.StatusOK || body != string(blob) {
			t.Fatalf("%s, %d bytes; want the whole blob, resumed on the busy node (it is %s)", resp.Status, len(body), up.Set().ByHost(b).State())
		}
		resumes++
		if resp, body := send(t, addr, http.MethodGet, "/v2/whole/blobs/"+blobs[1], nil); resp.StatusCode != http.StatusOK || body != string(blob) {
			t.Fatalf("the blob a serves whole: %s, %d bytes", resp.Status, len(body))
		}
		if s := up.Set().ByHost(b).State(); s == upstream.Down {
			t.Fatalf("the node answering resumes (%d so far) while its probes time out was found %s", resumes, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if e := ejected(up.Set()); len(e) != 0 {
		t.Fatalf("ejected: %v; the test wants a in rotation, b taking only resumes", e)
	}
}
