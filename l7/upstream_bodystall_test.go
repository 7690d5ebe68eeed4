package l7

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/upstream"
)

// shortBodyReadTimeout sets upstreamBodyReadTimeout for one test.
func shortBodyReadTimeout(t *testing.T, d time.Duration) {
	old := upstreamBodyReadTimeout.Load()
	upstreamBodyReadTimeout.Store(int64(d))
	t.Cleanup(func() { upstreamBodyReadTimeout.Store(old) })
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
	shortBodyReadTimeout(t, 300*time.Millisecond)
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
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled node's request is still open")
	}
}

// With one node, the client of a stalled body gets the cut (a short body)
// after the read timeout, not a download that never ends.
func TestBlobBodyStalledAtLoneNodeIsCut(t *testing.T) {
	shortBodyReadTimeout(t, 300*time.Millisecond)
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
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled node's request is still open")
	}
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
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the Nexus request of a reset stream is still open")
	}
}
