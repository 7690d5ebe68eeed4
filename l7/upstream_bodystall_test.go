package l7

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/upstream"
)

// shorten sets one of the upstream timeouts (upstreamBodyReadTimeout,
// upstreamReadStallTimeout, upstreamSendTimeout) to d for one test.
func shorten(t *testing.T, timeout *atomic.Int64, d time.Duration) {
	old := timeout.Load()
	timeout.Store(int64(d))
	t.Cleanup(func() { timeout.Store(old) })
}

// stallingBlobNode serves blob and its ranges on /repository/ paths; on
// the node listening at *staller a whole-blob answer stops halfway and
// waits, sending nothing, until its request ends (gone is closed then).
func stallingBlobNode(blob []byte, staller *atomic.Pointer[string], gone chan struct{}) http.HandlerFunc {
	return halfBlobNode(blob, staller, nil, func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			close(gone)
		case <-time.After(time.Minute):
		}
	})
}

// A node that stops sending a blob's body mid-way (its remote stalled, its
// disk hung) is given up after the read timeout, as nginx's
// proxy_read_timeout does between two reads: the download goes on from
// another node, and the stalled request's Nexus connection is closed
// instead of held for good.
func TestBlobBodyStalledAtNexusMovesOn(t *testing.T) {
	shorten(t, &upstreamBodyReadTimeout, 300*time.Millisecond)
	blob, digest := resumeBlob()
	var staller atomic.Pointer[string]
	gone := make(chan struct{})
	h := stallingBlobNode(blob, &staller, gone)
	a, b := startNode(t, h), startNode(t, h)
	addr, up := haProxy(t, io.Discard, 0, a, b)
	if ns, _ := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest); ns[0].Host != a.addr {
		a, b = b, a
	}
	staller.Store(&a.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, body := sendRequest(t, teamRequest(addr, http.MethodGet, "/v2/app/blobs/"+digest, nil).WithContext(ctx))
	if resp.StatusCode != http.StatusOK || body != string(blob) {
		t.Fatalf("%s, %d of %d bytes (the blob: %v); want the whole blob, resumed from the other node", resp.Status, len(body), len(blob), body == string(blob))
	}
	endsWithin10s(t, gone, "the stalled node's request is still open")
}

// With one node, the client of a stalled body gets the cut (a short body)
// after the read timeout, not a download that never ends.
func TestBlobBodyStalledAtLoneNodeIsCut(t *testing.T) {
	shorten(t, &upstreamBodyReadTimeout, 300*time.Millisecond)
	blob, digest := resumeBlob()
	var staller atomic.Pointer[string]
	gone := make(chan struct{})
	a := startNode(t, stallingBlobNode(blob, &staller, gone))
	staller.Store(&a.addr)
	addr, _ := haProxy(t, io.Discard, 0, a)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(teamRequest(addr, http.MethodGet, "/v2/app/blobs/"+digest, nil).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || ctx.Err() != nil || len(got) >= len(blob) {
		t.Fatalf("%d of %d bytes, err %v (client deadline passed: %v); want the cut, before the client gives up", len(got), len(blob), err, ctx.Err() != nil)
	}
	endsWithin10s(t, gone, "the stalled node's request is still open")
}

// An HTTP/2 client that resets its blob download while Nexus sends
// nothing (no write to fail) ends the Nexus request at once: its place and
// Jetty's thread are not held until the read timeout.
func TestH2ResetBlobDownloadEndsTheNexusRequest(t *testing.T) {
	blob, digest := resumeBlob()
	var staller atomic.Pointer[string]
	gone := make(chan struct{})
	a := startNode(t, stallingBlobNode(blob, &staller, gone))
	staller.Store(&a.addr)
	addr, _ := haProxy(t, io.Discard, 0, a)
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := h2cTransport(t, nil).RoundTrip(teamRequest(addr, http.MethodGet, "/v2/app/blobs/"+digest, nil).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("%s: want HTTP/2", resp.Proto)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	cancel() // RST_STREAM
	resp.Body.Close()
	endsWithin10s(t, gone, "the Nexus request of a reset stream is still open")
}

// An HTTP/2 client that resets its stream while its download is being
// resumed (the next node not yet answered) ends the resumed request too,
// once it answers: the reset came before that request could be ended, and
// must not be forgotten, or the resumed node's body, sending nothing,
// holds its place and Jetty's thread until the read timeout.
func TestH2ResetDuringResumeEndsTheResumedRequest(t *testing.T) {
	blob, digest := resumeBlob()
	var cutter atomic.Pointer[string]
	asked, reset, gone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	cut := cuttingBlobNode(blob, &cutter, nil)
	h := func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") == "" || !once.CompareAndSwap(false, true) {
			cut(w, r)
			return
		}
		// The resume: answered only once the client has reset.
		heldRange(w, r, blob, asked, reset, gone)
	}
	a, b := startNode(t, h), startNode(t, h)
	addr, up := haProxy(t, io.Discard, 0, a, b)
	if ns, _ := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest); ns[0].Host != a.addr {
		a, b = b, a
	}
	cutter.Store(&a.addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := h2cTransport(t, nil).RoundTrip(teamRequest(addr, http.MethodGet, "/v2/app/blobs/"+digest, nil).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("%s: want HTTP/2", resp.Proto)
	}
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		t.Fatal("the download was not resumed")
	}
	cancel() // RST_STREAM while the resume waits for its answer
	resp.Body.Close()
	// Lets the proxy take the reset in before the resume's answer comes
	// (were it later, the reset would end the resumed request anyway).
	time.Sleep(200 * time.Millisecond)
	close(reset)
	endsWithin10s(t, gone, "the resumed Nexus request of a stream reset during the resume is still open")
}

// endsWithin10s fails t unless gone is closed within 10 s.
func endsWithin10s(t *testing.T, gone <-chan struct{}, stillOpen string) {
	t.Helper()
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal(stillOpen)
	}
}

// heldRange answers a ranged request for blob once reset is closed (asked
// is closed as the request comes): its headers, then nothing of the body
// until the request ends, which closes gone.
func heldRange(w http.ResponseWriter, r *http.Request, blob []byte, asked, reset, gone chan struct{}) {
	close(asked)
	<-reset
	var from, to int
	fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &from, &to)
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to, len(blob)))
	w.Header().Set("Content-Length", strconv.Itoa(to-from+1))
	w.WriteHeader(http.StatusPartialContent)
	w.(http.Flusher).Flush()
	select {
	case <-r.Context().Done():
		close(gone)
	case <-time.After(time.Minute):
	}
}
