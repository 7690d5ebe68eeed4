package l7

import (
	"io"
	"net/http"
	"testing"
)

// A response Nexus sends without a Content-Type reaches the client without
// one, over HTTP/1.1 and HTTP/2: net/http would otherwise sniff the body
// and invent one. A manifest then read "text/plain; charset=utf-8", which
// containerd takes for a schema 1 manifest; a layer "application/x-gzip".
func TestNoContentTypeInvented(t *testing.T) {
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`
	layer := "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03layer"
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil // Nexus sent none
		w.Header().Set("Docker-Content-Digest", "sha256:00")
		switch r.URL.Path {
		case "/repository/team-a/v2/app/manifests/1":
			io.WriteString(w, manifest)
		case "/repository/team-a/v2/app/blobs/sha256:00":
			io.WriteString(w, layer)
		default:
			w.WriteHeader(http.StatusOK) // the probes
		}
	})
	addr, _ := haProxy(t, io.Discard, 0, node)
	for _, major := range []int{1, 2} {
		tr := &http.Transport{DisableKeepAlives: true}
		if major == 2 {
			tr = h2cTransport(t, nil)
		}
		for path, want := range map[string]string{"/v2/app/manifests/1": manifest, "/v2/app/blobs/sha256:00": layer} {
			resp, err := tr.RoundTrip(teamRequest(addr, http.MethodGet, path, nil))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(b) != want || resp.ProtoMajor != major {
				t.Fatalf("HTTP/%d %s: %s %s %q", major, path, resp.Proto, resp.Status, b)
			}
			if ct, ok := resp.Header["Content-Type"]; ok {
				t.Errorf("HTTP/%d %s: Content-Type %q, Nexus sent none", major, path, ct)
			}
			if resp.Header.Get("Docker-Content-Digest") != "sha256:00" {
				t.Errorf("HTTP/%d %s: Docker-Content-Digest lost: %v", major, path, resp.Header)
			}
		}
	}
}
