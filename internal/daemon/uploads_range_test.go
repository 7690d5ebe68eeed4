package daemon_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// A client's own Range on a blob whose body breaks on every node in turn
// still gets exactly the bytes it asked for, under the Content-Range of
// its range: nexmux's resume shifts onto the client's range, never onto
// the whole blob.
func TestUploadsClientRangeResumed(t *testing.T) {
	st, blob, url := blobCutOnEveryNode(t)
	size := int64(len(blob))
	tr := h1(st)
	for _, c := range []struct {
		rng        string
		start, end int64
	}{
		{"", 0, size - 1},
		{"bytes=100000-", 100000, size - 1},
		{"bytes=100000-900000", 100000, 900000},
		{"bytes=-900000", size - 900000, size - 1},
		{"bytes=0-", 0, size - 1},
		{"bytes=100000-99999999999", 100000, size - 1},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		req.SetBasicAuth(stack.User, stack.Password)
		if c.rng != "" {
			req.Header.Set("Range", c.rng)
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%q: %v", c.rng, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%q: body after %d bytes: %v", c.rng, len(got), err)
		}
		if c.rng == "" {
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("whole blob: %s", resp.Status)
			}
		} else {
			want := fmt.Sprintf("bytes %d-%d/%d", c.start, c.end, size)
			if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != want {
				t.Fatalf("%q: %s Content-Range %q, want 206 %q", c.rng, resp.Status, resp.Header.Get("Content-Range"), want)
			}
		}
		if !bytes.Equal(got, blob[c.start:c.end+1]) {
			t.Fatalf("%q: %d bytes, not the %d asked for (or not the same bytes)", c.rng, len(got), c.end-c.start+1)
		}
	}
	// Past the end: 416 with the blob's size, passed on as Nexus sent it.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	req.SetBasicAuth(stack.User, stack.Password)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", size))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("bytes */%d", size); resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("Content-Range") != want {
		t.Fatalf("range past the end: %s Content-Range %q, want 416 %q", resp.Status, resp.Header.Get("Content-Range"), want)
	}
	// Every answer above was cut at least once.
	if n := counterValue(t, st.Daemon, "nexmux_upstream_resumes_total", nil); n < 6 {
		t.Fatalf("%v resumes counted, want at least one per request", n)
	}
}

// A client's Range that Nexus answers with the whole blob (several
// ranges, an If-Range of another validator) is a 200 like any other: a cut
// body resumes on another node instead of ending the client's download.
func TestUploadsWholeAnswerToRangeResumed(t *testing.T) {
	st, blob, url := blobCutOnEveryNode(t)
	size := int64(len(blob))
	tr := h1(st)
	for _, hdr := range [][2]string{
		{"Range", "bytes=0-10,20-30"},
		{"If-Range", `"sha256:0000000000000000000000000000000000000000000000000000000000000000"`},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		req.SetBasicAuth(stack.User, stack.Password)
		req.Header.Set("Range", "bytes=100-")
		req.Header.Set(hdr[0], hdr[1])
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%v: %v", hdr, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("%v: %s, %d of %d bytes (same: %v), %v; want 200 and the whole blob",
				hdr, resp.Status, len(got), size, bytes.Equal(got, blob), err)
		}
	}
}

// blobCutOnEveryNode is three HA nodes holding one 1 MiB blob of
// team-a's, each cutting its body at a different point past the middle
// (together they carry any range of it): the blob and its URL on team-a.
func blobCutOnEveryNode(t *testing.T) (*stack.Stack, []byte, string) {
	t.Helper()
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	img, _ := random.Image(1<<20, 1)
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	dg, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	blob, _ := io.ReadAll(rc)
	rc.Close()
	for i, n := range st.NexusNodes {
		n.SetCutBlobAfter(int64(len(blob))/2 + int64(i)*(37<<10))
	}
	return st, blob, "https://" + st.Host("team-a") + "/v2/base/blobs/" + dg.String()
}
