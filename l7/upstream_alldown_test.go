package l7

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/upstream"
)

// Every node down: a chunk of an open upload gets the 503 UNAVAILABLE with
// Retry-After that every other request gets, not 404 BLOB_UPLOAD_UNKNOWN.
// No node was asked, so nothing says the session is gone (here it is not:
// once the nodes are back, the same Location takes the chunk), and
// go-containerregistry gives up on a 404 where it retries a 503.
func TestHAUploadFollowUpWithEveryNodeDown(t *testing.T) {
	_, nodes := haCluster(t, 2)
	addr, up := haProxyURLs(t, io.Discard, 0, haRepo, nodeURLs(nodes)...)
	u := startUpload(t, addr)
	patch := func() (*http.Response, string) {
		return sendChunk(t, addr, u.RequestURI())
	}
	state := func(want upstream.State) func() bool {
		return func() bool {
			for _, n := range nodes {
				if up.Set().ByHost(n.Addr()).State() != want {
					return false
				}
			}
			return true
		}
	}
	for _, n := range nodes {
		if err := n.SetDown(true); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "every node found down", state(upstream.Down))
	resp, body := patch()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"UNAVAILABLE"`) {
		t.Fatalf("PATCH with every node down: %s Retry-After %q %s", resp.Status, resp.Header.Get("Retry-After"), body)
	}
	for _, n := range nodes {
		if err := n.SetDown(false); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "every node writable again", state(upstream.Writable))
	if resp, body := patch(); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH once the nodes are back: %s %s", resp.Status, body)
	}
}
