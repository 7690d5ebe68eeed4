package l7

import (
	"io"
	"net/http"
	"testing"
)

// Nexus's own 503 (an offline repository or a proxy repository's remote
// down on every node, a frozen node refusing a write) reaches the client
// with a Retry-After, as nexmux's own 503s carry: without one, a client
// has nothing to pace its retries by. One Nexus sent is kept.
func TestNexus503ReachesClientWithRetryAfter(t *testing.T) {
	_, nodes := haCluster(t, 2)
	addr, _ := haProxyURLs(t, io.Discard, 0, haRepo, nodeURLs(nodes)...)
	for _, n := range nodes {
		n.SetRepositoryUnavailable(true)
	}
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
		path := "/v2/app/manifests/1"
		if m == http.MethodPost {
			path = "/v2/app/blobs/uploads/"
		}
		req := teamRequest(addr, m, path, nil)
		req.SetBasicAuth(haUser, haPass)
		resp, body := sendRequest(t, req)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s with every node answering 503: %s, Retry-After %q %s; want the 503 with a Retry-After", m, resp.Status, resp.Header.Get("Retry-After"), body)
		}
	}

	own := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	addr, _ = haProxy(t, io.Discard, 0, own)
	resp, _ := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil)
	if ra := resp.Header.Values("Retry-After"); len(ra) != 1 || ra[0] != "30" {
		t.Errorf("Nexus's own Retry-After: %q, want it kept alone", ra)
	}
}
