package daemon_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// Jetty decodes the path, so "upload%73" is an upload follow-up to Nexus:
// it must go to the node that holds the session, as its plain spelling
// does, not to any node as a read (BLOB_UPLOAD_UNKNOWN there).
func TestHAUploadFollowUpSpelledEncoded(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	tr := h1(st)
	loc, _, _ := openUpload(t, st, tr)
	if strings.HasPrefix(loc, "/") {
		loc = "https://" + st.Host("team-a") + loc
	}
	encoded := strings.Replace(loc, "/blobs/uploads/", "/blobs/upload%73/", 1)
	if encoded == loc {
		t.Fatalf("Location %q", loc)
	}
	// Reads are spread at random over three nodes: twelve status reads
	// that ignored the session's node would miss it nearly surely.
	for i := range 12 {
		resp, body := do(t, tr, http.MethodGet, encoded, nil)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("status read %d of %s: %s %s", i, encoded, resp.Status, body)
		}
	}
}

// A blob read spelled "blob%73" is a blob download to Nexus: a body a node
// cuts mid-stream resumes from another node, as with "blobs".
func TestHABlobDownloadSpelledEncodedResumes(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	img, _ := random.Image(1<<20, 1)
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	st.NexusNodes[0].SetCutBlobAfter(300 << 10)
	st.NexusNodes[1].SetCutBlobAfter(400 << 10)
	url := "https://" + st.Host("team-a") + "/v2/base/blob%73/" + d.String()
	// A node is drawn at random for a plain read: six reads that are not
	// blob downloads would meet a cutting node nearly surely.
	for i := range 6 {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(stack.User, stack.Password)
		resp, err := h1(st).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || n != size || "sha256:"+hex.EncodeToString(h.Sum(nil)) != d.String() {
			t.Fatalf("read %d: %s, %d of %d bytes, %v", i, resp.Status, n, size, err)
		}
	}
}
