package l7

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// With two nodes, one cutting every blob mid-body and the other ignoring
// Range (a 200 of the whole blob to a resume), the other node's answer is
// the blob, whole: the client gets its blob from it (the bytes before the
// break dropped), and the cut counts against the node that made it, so
// that node is ejected as one whose breaks a 206 makes whole is
// (TestHANodeBreakingEveryBlobIsEjected). Before, no resume was taken, the
// client's download was cut, and as no node served the blob whole the
// cuts were held against none: every pull starting on the cutting node
// failed, forever.
func TestHANodeCuttingBlobsBesideOneIgnoringRangeIsEjected(t *testing.T) {
	blob := make([]byte, 96<<10)
	for i := range blob {
		blob[i] = byte(i * 13 % 253) // no period: a splice at the wrong offset would show
	}
	var ranged atomic.Int64
	cutter := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		w.Write(blob[:len(blob)/3])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	whole := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			return
		}
		if r.Header.Get("Range") != "" {
			ranged.Add(1)
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		w.Write(blob) // Range ignored
	})
	addr, up := haProxy(t, io.Discard, 0, cutter, whole)
	cut := 0
	for i := 0; i < 200 && len(ejected(up.Set())) == 0; i++ {
		// Blobs of every digest: about half start on the cutting node.
		resp, body := send(t, addr, http.MethodGet, fmt.Sprintf("/v2/app/blobs/sha256:%064x", i), nil)
		if resp.StatusCode != http.StatusOK || !bytes.Equal([]byte(body), blob) {
			cut++
		}
	}
	if cut > 0 {
		t.Errorf("%d pulls came back cut or not the blob, with a node that serves every blob whole (it was asked %d resumes)", cut, ranged.Load())
	}
	if e := ejected(up.Set()); len(e) != 1 || e[0] != cutter.addr {
		t.Fatalf("ejected %v, want the node cutting every blob (%s) alone; its lastError: %q", e, cutter.addr, lastErrorOf(up, cutter.addr))
	}
}

func lastErrorOf(up *Upstreams, host string) string {
	for _, ni := range up.Set().Table() {
		if ni.Node == host {
			return ni.LastError
		}
	}
	return ""
}

// With three nodes, two cutting every blob and one ignoring Range, a pull
// whose resume asks the Range-ignoring node before the other cutter comes
// back to it once the cutter has broken too: its 200 is the blob, where
// before the pull was cut with a node left that serves every blob whole.
func TestResumeComesBackToANodeIgnoringRange(t *testing.T) {
	blob := make([]byte, 96<<10)
	for i := range blob {
		blob[i] = byte(i * 13 % 253)
	}
	cutting := func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		w.Write(blob[:len(blob)/3])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	whole := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		w.Write(blob) // Range ignored
	})
	addr, _ := haProxy(t, io.Discard, 0, startNode(t, cutting), startNode(t, cutting), whole)
	var cut []int
	for i := range 24 {
		resp, body := send(t, addr, http.MethodGet, fmt.Sprintf("/v2/app/blobs/sha256:%064x", i), nil)
		if resp.StatusCode != http.StatusOK || !bytes.Equal([]byte(body), blob) {
			cut = append(cut, i)
		}
	}
	if len(cut) > 0 {
		t.Fatalf("pulls %v of 24 came back cut or not the blob, with a node that serves every blob whole", cut)
	}
}
