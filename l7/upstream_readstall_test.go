package l7

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A Nexus that stops sending a small answer mid-body (a manifest, a tag
// list; with or without a Content-Length) has its request ended after the
// read timeout: the client gets the cut instead of a response that never
// ends, and the Nexus connection (a Jetty thread) is let go.
func TestSmallAnswerStalledAtNexusIsCut(t *testing.T) {
	shorten(t, &upstreamReadStallTimeout, 300*time.Millisecond)
	for _, path := range []string{"/v2/app/manifests/1", "/v2/app/tags/list"} {
		for _, chunked := range []bool{false, true} {
			t.Run(strings.TrimPrefix(path, "/v2/app/")+"/chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
				answer := bytes.Repeat([]byte("x"), 4000)
				gone := make(chan struct{})
				a := startNode(t, func(w http.ResponseWriter, r *http.Request) {
					if !strings.Contains(r.URL.Path, "/repository/") {
						return
					}
					if !chunked {
						w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
					}
					w.Write(answer[:len(answer)/2])
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
						close(gone)
					case <-time.After(time.Minute):
					}
				})
				addr, _ := haProxy(t, io.Discard, 0, a)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				// The cut: a short body, or, when none of the answer had
				// left nexmux yet (net/http holds a small one's first
				// bytes), the connection closed with no answer.
				var got []byte
				resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(teamRequest(addr, http.MethodGet, path, nil).WithContext(ctx))
				if err == nil {
					got, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if err == nil || ctx.Err() != nil || len(got) >= len(answer) {
					t.Fatalf("%d of %d bytes, err %v (client deadline passed: %v); want the cut, before the client gives up", len(got), len(answer), err, ctx.Err() != nil)
				}
				endsWithin10s(t, gone, "the stalled Nexus request is still open")
			})
		}
	}
}

// The read timeout counts only Nexus's silence: a client that stops
// reading a large answer for longer than it, then reads on, gets all of
// it.
func TestReadStallIgnoresASlowClient(t *testing.T) {
	shorten(t, &upstreamReadStallTimeout, 300*time.Millisecond)
	answer := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // beyond every buffer on the way
	a := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/repository/") {
			w.Write(answer)
		}
	})
	addr, _ := haProxy(t, io.Discard, 0, a)
	resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(teamRequest(addr, http.MethodGet, "/v2/app/tags/list", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(append(head, rest...), answer) {
		t.Fatalf("%d of %d bytes, err %v; want the whole answer", len(head)+len(rest), len(answer), err)
	}
}

// Nor does an upload that takes longer than it: the Transport's read of
// the answer begins as the connection opens, before the upload is sent,
// and each write to Nexus starts the count anew.
func TestReadStallIgnoresALongUpload(t *testing.T) {
	shorten(t, &upstreamReadStallTimeout, 300*time.Millisecond)
	var got atomic.Int64
	a := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/repository/") {
			n, _ := io.Copy(io.Discard, r.Body)
			got.Store(n)
			w.WriteHeader(http.StatusAccepted)
		}
	})
	addr, _ := haProxy(t, io.Discard, 0, a)
	pr, pw := io.Pipe()
	go func() {
		for range 12 {
			time.Sleep(100 * time.Millisecond)
			if _, err := pw.Write(bytes.Repeat([]byte("u"), 1000)); err != nil {
				return
			}
		}
		pw.Close()
	}()
	resp, _ := sendRequest(t, teamRequest(addr, http.MethodPatch, "/v2/app/blobs/uploads/u1", pr))
	if resp.StatusCode != http.StatusAccepted || got.Load() != 12000 {
		t.Fatalf("%s, Nexus got %d of 12000 bytes; want 202 and the whole body", resp.Status, got.Load())
	}
}
