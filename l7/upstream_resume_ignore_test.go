package l7

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nexmux/nexmux/upstream"
)

// A blob cut on its node resumes past a node whose answer to the resume is
// no continuation (a 200 of the whole blob, Range ignored; a 503; a 416)
// onto the next one that answers the 206 asked for: the client gets the
// blob intact, counted as one resume, never the other node's bytes
// spliced in.
func TestResumeSkipsANodeAnsweringNoContinuation(t *testing.T) {
	blob := make([]byte, 128<<10)
	for i := range blob {
		blob[i] = byte(i * 13 % 253) // no period: a splice would show
	}
	digest := "sha256:" + strings.Repeat("ab", 32) // the rendezvous key only
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter)
	}{
		{"range ignored", func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
			w.Write(blob)
		}},
		{"503", func(w http.ResponseWriter) { http.Error(w, "unavailable", http.StatusServiceUnavailable) }},
		{"416", func(w http.ResponseWriter) {
			w.Header().Set("Content-Range", "bytes */1000")
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cutter, other atomic.Pointer[string]
			var otherAsked, ranged atomic.Int64
			h := func(w http.ResponseWriter, r *http.Request) {
				if !strings.Contains(r.URL.Path, "/repository/") {
					return
				}
				local := r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()
				switch {
				case cutter.Load() != nil && *cutter.Load() == local:
					w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
					w.Write(blob[:len(blob)/3])
					w.(http.Flusher).Flush()
					panic(http.ErrAbortHandler)
				case other.Load() != nil && *other.Load() == local && r.Header.Get("Range") != "":
					otherAsked.Add(1)
					tc.answer(w)
				default:
					if r.Header.Get("Range") != "" {
						ranged.Add(1)
					}
					if serveRange(w, r, blob) {
						return
					}
					w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
					w.Write(blob)
				}
			}
			a, b, c := startNode(t, h), startNode(t, h), startNode(t, h)
			addr, up := haProxy(t, io.Discard, 0, a, b, c)
			ns, err := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest)
			if err != nil || len(ns) != 3 {
				t.Fatalf("pick: %v %v", ns, err)
			}
			first, second := ns[0].Host, ns[1].Host
			cutter.Store(&first)
			other.Store(&second)
			resp, body := send(t, addr, http.MethodGet, "/v2/app/blobs/"+digest, nil)
			if resp.StatusCode != http.StatusOK || !bytes.Equal([]byte(body), blob) {
				t.Fatalf("%s, %d bytes (the blob is %d; prefix: %v); want the whole blob, resumed", resp.Status, len(body), len(blob),
					bytes.HasPrefix(blob, []byte(body)))
			}
			if otherAsked.Load() == 0 || ranged.Load() == 0 {
				t.Fatalf("resumes asked of the second node %d, of the third %d; want both asked", otherAsked.Load(), ranged.Load())
			}
			if all, _ := resumeCounts(t, up.Set()); all != 1 {
				t.Fatalf("nexmux_upstream_resumes_total %v, want 1", all)
			}
		})
	}
}
