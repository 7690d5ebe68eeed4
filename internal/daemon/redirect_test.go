package daemon_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
)

// An S3 blob store (Nexus 3.79+, Pro) answers a blob GET with a redirect to
// a pre-signed URL. nexmux hands the 3xx to the client as it came (status,
// Location byte for byte: its signature covers the query) and never follows
// it: the client fetches from S3 itself. With one node and with an HA set.
func TestBlobRedirectPassedThroughNotFollowed(t *testing.T) {
	for _, nodes := range []int{0, 2} {
		t.Run(fmt.Sprintf("nodes=%d", nodes), func(t *testing.T) {
			var (
				mu    sync.Mutex
				blobs = map[string][]byte{} // digest -> content, filled after the push
				hits  atomic.Int64
			)
			s3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				mu.Lock()
				b, ok := blobs[strings.TrimPrefix(r.URL.Path, "/content/")]
				mu.Unlock()
				if !ok || r.URL.Query().Get("X-Amz-Signature") != "deadbeef" {
					http.Error(w, "no such key", http.StatusForbidden)
					return
				}
				w.Write(b)
			}))
			defer s3.Close()
			// A name, not 127.0.0.1: go-containerregistry refuses redirects
			// to private addresses (the stack's transport dials loopback
			// whatever the name).
			s3Base := strings.Replace(s3.URL, "127.0.0.1", "nexus-blobs.s3.example.com", 1)
			presigned := func(digest string) string {
				return s3Base + "/content/" + digest + "?X-Amz-Credential=AKIA%2F20250101%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Signature=deadbeef"
			}
			st := stack.Start(t, stack.Options{Config: teamRoutes(), Nodes: nodes, Fixture: fixtures.Config{
				BlobRedirect: func(repo, digest string) string {
					mu.Lock()
					defer mu.Unlock()
					if _, ok := blobs[digest]; ok {
						return presigned(digest)
					}
					return ""
				},
			}})
			img := pushImage(t, st, st.Host("team-a-push")+"/redir/app:1")
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			var first string
			for _, l := range layers {
				d, _ := l.Digest()
				rc, err := l.Compressed()
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(rc)
				rc.Close()
				mu.Lock()
				blobs[d.String()] = b
				mu.Unlock()
				if first == "" {
					first = d.String()
				}
			}

			tr := st.Transport()
			cl := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			req, _ := http.NewRequest(http.MethodGet, "https://"+st.Host("team-a")+"/v2/redir/app/blobs/"+first, nil)
			req.SetBasicAuth(stack.User, stack.Password)
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != presigned(first) {
				t.Fatalf("blob GET: %d Location %q, want 307 to %q", resp.StatusCode, resp.Header.Get("Location"), presigned(first))
			}
			if n := hits.Load(); n != 0 {
				t.Fatalf("the pre-signed URL was fetched %d times before any client followed it", n)
			}

			// A client that follows the redirect pulls the whole image.
			pullVerify(t, st, st.Host("team-a")+"/redir/app:1", img)
			if hits.Load() == 0 {
				t.Fatal("the pull never went to the blob store")
			}
		})
	}
}
