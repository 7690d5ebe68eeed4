package daemon_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
)

// An upload through two nodes in each of Nexus's Location shapes, with and
// without a context path: chunked PATCH with and without Content-Range,
// status GET, closing PUT with ?digest= and a last chunk, monolithic PUT,
// and a cancel. Every Location names the public host and the upload path,
// carries the affinity tag, and Docker-Upload-UUID/Range pass through.
func TestUploadsFlowEveryStyle(t *testing.T) {
	eachLocationShape(t, func(t *testing.T, fx fixtures.Config) {
		st := stack.Start(t, stack.Options{
			Nodes:   2,
			Fixture: fx,
			Config:  teamRoutes(),
		})
		tr := h1(st)
		push := "https://" + st.Host("team-a-push")
		call := func(method, u string, body string, hdr ...string) *http.Response {
			t.Helper()
			var rd io.Reader
			if body != "" {
				rd = strings.NewReader(body)
			}
			req, _ := http.NewRequestWithContext(t.Context(), method, u, rd)
			req.SetBasicAuth(stack.User, stack.Password)
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, u, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp
		}
		checkLoc := func(what string, resp *http.Response, status int, rng string) string {
			t.Helper()
			loc := resp.Header.Get("Location")
			prefix := push + "/v2/up/app/blobs/uploads/"
			uuid, _, _ := strings.Cut(strings.TrimPrefix(loc, prefix), "?")
			if resp.StatusCode != status || !strings.HasPrefix(loc, prefix) || !strings.Contains(loc, "_nexmux=") ||
				uuid == "" || resp.Header.Get("Docker-Upload-UUID") != uuid || resp.Header.Get("Range") != rng {
				t.Fatalf("%s: %s Location %q Docker-Upload-UUID %q Range %q; want %d, a tagged %s<uuid>, Range %q",
					what, resp.Status, loc, resp.Header.Get("Docker-Upload-UUID"), resp.Header.Get("Range"), status, prefix, rng)
			}
			return loc
		}
		data := "hello world!"
		dg := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(data)))

		loc := checkLoc("POST", call(http.MethodPost, push+"/v2/up/app/blobs/uploads/", ""), http.StatusAccepted, "0-0")
		// The fixture (like pkg/registry) streams only a first chunk.
		loc = checkLoc("PATCH without Content-Range", call(http.MethodPatch, loc, "hello",
			"Content-Type", "application/octet-stream"), http.StatusAccepted, "0-4")
		loc = checkLoc("status GET", call(http.MethodGet, loc, ""), http.StatusNoContent, "0-4")
		loc = checkLoc("PATCH with Content-Range", call(http.MethodPatch, loc, " world",
			"Content-Range", "5-10", "Content-Type", "application/octet-stream"), http.StatusAccepted, "0-10")
		resp := call(http.MethodPut, loc+"&digest="+dg, "!", "Content-Type", "application/octet-stream")
		if want := push + "/v2/up/app/blobs/" + dg; resp.StatusCode != http.StatusCreated ||
			resp.Header.Get("Location") != want || resp.Header.Get("Docker-Content-Digest") != dg {
			t.Fatalf("closing PUT: %s Location %q digest %q, want 201 %q", resp.Status, resp.Header.Get("Location"), resp.Header.Get("Docker-Content-Digest"), want)
		}
		if resp := call(http.MethodHead, push+"/v2/up/app/blobs/"+dg, ""); resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(data)) {
			t.Fatalf("HEAD blob: %s length %d", resp.Status, resp.ContentLength)
		}

		mono := "monolithic"
		mdg := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(mono)))
		loc = checkLoc("POST", call(http.MethodPost, push+"/v2/up/app/blobs/uploads/", ""), http.StatusAccepted, "0-0")
		if resp := call(http.MethodPut, loc+"&digest="+url.QueryEscape(mdg), mono, "Content-Type", "application/octet-stream"); resp.StatusCode != http.StatusCreated ||
			resp.Header.Get("Location") != push+"/v2/up/app/blobs/"+mdg {
			t.Fatalf("monolithic PUT: %s Location %q", resp.Status, resp.Header.Get("Location"))
		}
		// Mount: the blob is in the repository already.
		if resp := call(http.MethodPost, push+"/v2/up/other/blobs/uploads/?mount="+mdg+"&from=up/app", ""); resp.StatusCode != http.StatusCreated ||
			resp.Header.Get("Location") != push+"/v2/up/other/blobs/"+mdg {
			t.Fatalf("mount: %s Location %q", resp.Status, resp.Header.Get("Location"))
		}

		loc = checkLoc("POST", call(http.MethodPost, push+"/v2/up/app/blobs/uploads/", ""), http.StatusAccepted, "0-0")
		if resp := call(http.MethodDelete, loc, ""); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE: %s", resp.Status)
		}
		if resp := call(http.MethodGet, loc, ""); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status after DELETE: %s", resp.Status)
		}
	})
}
