package l7

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// askNodes are two nodes for an upload follow-up without a tag, which
// nexmux asks both about: A does not know the session; B takes the
// question and works on it, deaf to nexmux, until release is closed (a
// busy Jetty thread notices a closed connection only when it writes).
// asked receives once B has the question; onB counts B's /repository/
// requests in flight and the most seen.
func askNodes(t *testing.T) (a, b *haNode, onB *peak, asked, release chan struct{}) {
	onB, asked, release = new(peak), make(chan struct{}, 8), make(chan struct{})
	a = startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/uploads/") {
			w.WriteHeader(http.StatusNotFound)
		}
	})
	b = startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		onB.enter()
		defer onB.leave()
		if strings.Contains(r.URL.Path, "/blobs/uploads/") {
			asked <- struct{}{}
			<-release
			w.WriteHeader(http.StatusNotFound)
		}
	})
	t.Cleanup(func() { close(release) })
	return a, b, onB, asked, release
}

// readB sends a manifest GET whose node is B and reads its answer: B
// serves it at once, A after B's place stayed taken for the queue wait.
func readB(t *testing.T, addr string, up *Upstreams, b *haNode) {
	t.Helper()
	resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/"+digestOn(t, up.Set(), b.addr), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("read on B: %s %s", resp.Status, body)
	}
}

// The question "who knows this upload" holds its place on a node until
// the node answers, as every request does: a client that leaves while it
// is asked does not give the place back while Nexus still works on the
// question, or a client sending follow-ups and leaving in a loop would
// pile questions on Nexus beyond --upstream-max-conns.
func TestAskOfALeavingClientKeepsItsSlot(t *testing.T) {
	a, b, onB, asked, _ := askNodes(t)
	addr, up := haProxy(t, io.Discard, 1, a, b)
	c := stalledClient(t, addr, "PATCH /v2/app/blobs/uploads/u1 HTTP/1.1\r\nHost: team-a.example.com\r\nContent-Length: 5\r\n\r\nchunk")
	<-asked
	c.Close()
	readB(t, addr, up, b)
	if m := onB.max.Load(); m > 1 {
		t.Fatalf("node B served %d requests at once with --upstream-max-conns 1: the question of a client that left gave its place back while B still worked on it", m)
	}
}

// A node that has not answered the question when the wait ends may well
// hold the upload (busy, as when it was too busy to be asked at all:
// TestBusyNodeWhileAskingIsNoUnknownUpload): the follow-up gets a
// retryable 503, not 404 BLOB_UPLOAD_UNKNOWN, which would make the client
// start the layer over though the session may be intact. The question
// keeps its place on B meanwhile.
func TestUnansweredAskIsNoUnknownUpload(t *testing.T) {
	a, b, onB, _, _ := askNodes(t)
	addr, up := haProxy(t, io.Discard, 1, a, b)
	resp, body := send(t, addr, http.MethodPatch, "/v2/app/blobs/uploads/u1", strings.NewReader("chunk"))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"UNAVAILABLE"`) {
		t.Fatalf("PATCH while B has not answered whether it holds the upload: %s Retry-After %q %s, want a retryable 503", resp.Status, resp.Header.Get("Retry-After"), body)
	}
	readB(t, addr, up, b)
	if m := onB.max.Load(); m > 1 {
		t.Fatalf("node B served %d requests at once with --upstream-max-conns 1", m)
	}
}

// A node that refuses the client's credentials while another takes them
// and does not know the upload: the refusal is that node's own (a broken
// realm), not the client's, so the follow-up gets 404 BLOB_UPLOAD_UNKNOWN
// as when both had said so; only where every node that answered refused
// the credentials does the request go to one of them for its challenge
// (TestHAUploadAskedWithRefusedCredentialsIsUnauthorized).
func TestAskRefusedByOneNodeOnlyIsUnknownUpload(t *testing.T) {
	var toB atomic.Int64
	a := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/uploads/") {
			w.WriteHeader(http.StatusNotFound)
		}
	})
	b := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/uploads/") {
			toB.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="Sonatype Nexus Repository Manager"`)
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	addr, _ := haProxy(t, io.Discard, 4, a, b)
	resp, body := send(t, addr, http.MethodPatch, "/v2/app/blobs/uploads/u1", strings.NewReader("chunk"))
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "BLOB_UPLOAD_UNKNOWN") {
		t.Fatalf("PATCH: %s %s, want 404 BLOB_UPLOAD_UNKNOWN", resp.Status, body)
	}
	if n := toB.Load(); n != 1 {
		t.Fatalf("node B got %d upload requests, want the question alone", n)
	}
}
