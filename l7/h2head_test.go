package l7

import (
	"io"
	"net/http"
	"testing"
)

// With per-client limits on, an HTTP/2 answer is flushed before the
// handler returns (heldSlot.deliver): a HEAD (Nexus's, or a local refusal
// whose error body is not sent) and a 304 still arrive whole, with the
// Content-Length of what a GET would get and no body, and the next
// request on the connection is served.
func TestH2HeadAnd304WithHeldPlace(t *testing.T) {
	manifest := `{"schemaVersion":2}`
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") != "" {
			w.Header().Set("ETag", `"m"`)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Content-Length", "19")
		io.WriteString(w, manifest)
	})
	addr, _ := haProxyConfig(t, io.Discard, 0, "team-a", Config{MaxRequestsPerClient: 4}, "http://"+node.addr)
	tr := h2cTransport(t, nil)
	do := func(method, path string, h map[string]string) (*http.Response, string) {
		t.Helper()
		req := teamRequest(addr, method, path, nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.ProtoMajor != 2 {
			t.Fatalf("%s %s: %s %v", method, path, resp.Proto, err)
		}
		return resp, string(b)
	}
	for i := 0; i < 3; i++ {
		resp, b := do(http.MethodHead, "/v2/app/manifests/1", nil)
		if resp.StatusCode != http.StatusOK || b != "" || resp.ContentLength != 19 {
			t.Fatalf("HEAD manifest: %s length %d %q", resp.Status, resp.ContentLength, b)
		}
		resp, b = do(http.MethodGet, "/v2/app/manifests/1", map[string]string{"If-None-Match": `"m"`})
		if resp.StatusCode != http.StatusNotModified || b != "" || resp.Header.Get("ETag") != `"m"` {
			t.Fatalf("conditional GET: %s %q %v", resp.Status, b, resp.Header)
		}
		resp, b = do(http.MethodHead, "/other", nil)
		want := len(ErrorBody("NOT_FOUND", "nexmux: only the registry API (/v2/, /v1/) is served on this name"))
		if resp.StatusCode != http.StatusNotFound || b != "" || resp.ContentLength != int64(want) {
			t.Fatalf("HEAD refused: %s length %d (want %d) %q", resp.Status, resp.ContentLength, want, b)
		}
		resp, b = do(http.MethodGet, "/v2/app/manifests/1", nil)
		if resp.StatusCode != http.StatusOK || b != manifest {
			t.Fatalf("GET manifest: %s %q", resp.Status, b)
		}
	}
}
