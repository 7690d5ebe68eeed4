package daemon_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// dockerd resumes a broken layer download with `Range: bytes=N-` and
// If-Range: Nexus answers 206 with Content-Range, and nexmux must pass the
// request's range and the partial answer through unchanged (a whole 200
// would be appended to what the client already has). If-Range that no
// longer matches gets the whole blob. With one node and with an HA set,
// whose blob answers nexmux resumes across nodes itself.
func TestClientRangeRequestPassesThrough(t *testing.T) {
	for _, nodes := range []int{0, 2} {
		t.Run(fmt.Sprintf("nodes=%d", nodes), func(t *testing.T) {
			st := stack.Start(t, stack.Options{Config: teamRoutes(), Nodes: nodes})
			img := pushImage(t, st, st.Host("team-a-push")+"/ranged/app:1")
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			d, _ := layers[0].Digest()
			rc, err := layers[0].Compressed()
			if err != nil {
				t.Fatal(err)
			}
			blob, _ := io.ReadAll(rc)
			rc.Close()
			from := len(blob) / 3

			cl := &http.Client{Transport: st.Transport()}
			get := func(ifRange string) (*http.Response, []byte) {
				t.Helper()
				req, _ := http.NewRequest(http.MethodGet, "https://"+st.Host("team-a")+"/v2/ranged/app/blobs/"+d.String(), nil)
				req.SetBasicAuth(stack.User, stack.Password)
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-", from))
				req.Header.Set("If-Range", ifRange)
				resp, err := cl.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				return resp, b
			}
			resp, b := get(`"` + d.String() + `"`)
			wantCR := fmt.Sprintf("bytes %d-%d/%d", from, len(blob)-1, len(blob))
			if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != wantCR || !bytes.Equal(b, blob[from:]) {
				t.Fatalf("ranged GET: %d Content-Range %q, %d bytes (match %v); want 206 %q and the blob from byte %d",
					resp.StatusCode, resp.Header.Get("Content-Range"), len(b), bytes.Equal(b, blob[from:]), wantCR, from)
			}
			resp, b = get(`"sha256:` + fmt.Sprintf("%064d", 0) + `"`)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(b, blob) {
				t.Fatalf("GET with a stale If-Range: %d, %d bytes; want 200 and the whole blob", resp.StatusCode, len(b))
			}
		})
	}
}
