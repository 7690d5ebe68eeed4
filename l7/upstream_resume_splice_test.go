package l7

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
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

// A download cut on one node never continues with another node's bytes of
// a blob of another length under the same digest (a truncated proxy cache):
// the client gets a short body, never a splice of the two.
func TestResumeNeverSplicesAnotherLength(t *testing.T) {
	blob, digest := resumeBlob()
	other := []byte(strings.Repeat("ZYXWVUTSRQPONMLK", 9<<10))
	resp, body := cutThenServe(t, blob, digest, func(w http.ResponseWriter, r *http.Request) {
		if serveRange(w, r, other) {
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(other)))
		w.Write(other)
	})
	wantCutPrefix(t, resp, body, blob)
}

// A resume answered with a 206 of another range than asked (here the
// whole blob, from byte 0) is no continuation: the client gets the cut
// blob's first bytes, never them followed by the blob's start again.
func TestResumeTakesOnlyTheRangeAsked(t *testing.T) {
	// No period: the blob's start is not its second half.
	blob := make([]byte, 128<<10)
	for i := range blob {
		blob[i] = byte(i * 7 % 251)
	}
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	resp, body := cutThenServe(t, blob, digest, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(blob)-1, len(blob)))
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		}
		w.Write(blob)
	})
	wantCutPrefix(t, resp, body, blob)
}

// A resumed 206 that carries more bytes than its Content-Range names (a
// Content-Length that disagrees with it, or a chunked body that runs on)
// gives the client exactly the blob: the range's bytes, not the extra ones
// and not fewer (net/http refuses a whole write that passes the declared
// length, so passing the extra on would drop the range's last bytes too).
func TestResumeTakesOnlyTheRangeBytes(t *testing.T) {
	blob, digest := resumeBlob()
	for _, chunked := range []bool{false, true} {
		t.Run(map[bool]string{false: "content-length", true: "chunked"}[chunked], func(t *testing.T) {
			resp, body := cutThenServe(t, blob, digest, func(w http.ResponseWriter, r *http.Request) {
				var from, to int
				if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &from, &to); err != nil {
					w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
					w.Write(blob)
					return
				}
				extra := append(append([]byte{}, blob[from:to+1]...), "EXTRA BYTES"...)
				w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to, len(blob)))
				if !chunked {
					w.Header().Set("Content-Length", strconv.Itoa(len(extra)))
				}
				w.WriteHeader(http.StatusPartialContent)
				w.Write(extra)
			})
			if chunked {
				if resp.StatusCode != http.StatusOK || body != string(blob) {
					t.Fatalf("%s, %d bytes (the blob is %d; equal: %v); want the whole blob, resumed", resp.Status, len(body), len(blob), body == string(blob))
				}
				return
			}
			// A Content-Length that contradicts the range is no answer
			// to resume with: the client gets the cut blob's first bytes.
			wantCutPrefix(t, resp, body, blob)
		})
	}
}

// A client's If-Range names a validator of its own: the node that broke
// off had answered 200, the whole blob, as the validator did not match.
// The resume asks for the rest of that 200 without it: kept, it would have
// the next node answer 200 again, which no resume takes, and the client
// would get a cut blob.
func TestResumeOfAWholeAnswerAsksWithoutIfRange(t *testing.T) {
	blob, digest := resumeBlob()
	resp, body := cutThenServeWith(t, blob, digest, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"`+digest+`"`)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
	}, http.Header{"Range": {"bytes=0-"}, "If-Range": {`"sha256:another"`}})
	if resp.StatusCode != http.StatusOK || body != string(blob) {
		t.Fatalf("%s, %d bytes (the blob is %d; equal: %v); want the whole blob, resumed", resp.Status, len(body), len(blob), body == string(blob))
	}
}

// A blob answered 200 without a length (chunked: a proxy repository
// streaming what its remote sends) has no extent to resume within: it goes
// to the client whole, as it comes.
func TestBlobOfUnknownLengthPassesWhole(t *testing.T) {
	blob, digest := resumeBlob()
	h := func(w http.ResponseWriter, r *http.Request) {
		w.Write(blob[:1000])
		w.(http.Flusher).Flush() // no Content-Length from here: chunked
		w.Write(blob[1000:])
	}
	addr, _ := haProxy(t, io.Discard, 0, startNode(t, h), startNode(t, h))
	resp, body := send(t, addr, http.MethodGet, "/v2/app/blobs/"+digest, nil)
	if resp.StatusCode != http.StatusOK || body != string(blob) {
		t.Fatalf("%s, %d bytes (the blob is %d); want the whole blob", resp.Status, len(body), len(blob))
	}
}

// cutThenServe GETs blob through two nodes: the first in rendezvous order
// sends half of it and breaks off, the other answers with serve, which
// must be asked for a range (the resume) at least once.
func cutThenServe(t *testing.T, blob []byte, digest string, serve http.HandlerFunc) (*http.Response, string) {
	t.Helper()
	return cutThenServeWith(t, blob, digest, serve, nil)
}

// cutThenServeWith is cutThenServe for a GET with the headers hdr.
func cutThenServeWith(t *testing.T, blob []byte, digest string, serve http.HandlerFunc, hdr http.Header) (*http.Response, string) {
	t.Helper()
	var cutter atomic.Pointer[string]
	var asked atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()
		if c := cutter.Load(); c == nil || *c != local {
			if r.Header.Get("Range") != "" {
				asked.Add(1)
			}
			serve(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		w.Write(blob[:len(blob)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	a, b := startNode(t, h), startNode(t, h)
	addr, up := haProxy(t, io.Discard, 0, a, b)
	if ns, _ := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest); ns[0].Host != a.addr {
		a = b
	}
	cutter.Store(&a.addr)
	req := teamRequest(addr, http.MethodGet, "/v2/app/blobs/"+digest, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, body := sendRequest(t, req)
	if asked.Load() == 0 {
		t.Fatal("no resume was asked of the other node")
	}
	return resp, body
}

// wantCutPrefix: the client got a 200 with the blob's first bytes only.
func wantCutPrefix(t *testing.T, resp *http.Response, body string, blob []byte) {
	t.Helper()
	if resp.StatusCode != http.StatusOK || len(body) >= len(blob) || body != string(blob[:len(body)]) {
		t.Fatalf("%s, %d bytes (prefix of the blob: %v); want the cut blob's first bytes only", resp.Status, len(body), body == string(blob[:min(len(body), len(blob))]))
	}
}
