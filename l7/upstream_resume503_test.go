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

	"github.com/nexmux/nexmux/upstream"
)

// A node that answers every blob resume asked of it with 503, while
// another node serves the rest, fails those requests as it would fail
// first ones: its 503s count toward its passive ejection (README: 5
// 502/503/504 answers in a row; a failed resume counts once another node
// has served the blob whole), and it is ejected after five.
func TestResumeAnswered503CountsTowardEjection(t *testing.T) {
	blob, _ := resumeBlob()
	var cutter, refuser atomic.Pointer[string]
	var refused atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()
		switch {
		case cutter.Load() != nil && *cutter.Load() == local && r.Header.Get("Range") == "":
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
			w.Write(blob[:len(blob)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case refuser.Load() != nil && *refuser.Load() == local && r.Header.Get("Range") != "":
			refused.Add(1)
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		default:
			if serveRange(w, r, blob) {
				return
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
			w.Write(blob)
		}
	}
	a, b, c := startNode(t, h), startNode(t, h), startNode(t, h)
	addr, up := haProxy(t, io.Discard, 0, a, b, c)
	// Blobs whose first node is a and second b: a cuts each, b refuses
	// the resume, c sends the rest.
	cutter.Store(&a.addr)
	refuser.Store(&b.addr)
	var digests []string
	for i := 0; len(digests) < 5; i++ {
		d := fmt.Sprintf("sha256:%064x", i)
		ns, err := up.Set().Pick(upstream.ReadDigest, "team-a@"+d)
		if err != nil {
			t.Fatal(err)
		}
		if ns[0].Host == a.addr && ns[1].Host == b.addr {
			digests = append(digests, d)
		}
	}
	for _, d := range digests {
		resp, body := send(t, addr, http.MethodGet, "/v2/app/blobs/"+d, nil)
		if resp.StatusCode != http.StatusOK || body != string(blob) {
			t.Fatalf("%s: %s, %d bytes; want the whole blob, resumed on the third node", d, resp.Status, len(body))
		}
	}
	if refused.Load() != 5 {
		t.Fatalf("%d resumes refused by the second node, want 5", refused.Load())
	}
	var out []string
	for _, n := range ejected(up.Set()) {
		if n == b.addr {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		t.Fatalf("the node that answered 5 resumes in a row with 503 is not ejected (ejected: %v)", ejected(up.Set()))
	}
}
