package l7

import (
	"io"
	"net/http"
	"testing"

	"github.com/nexmux/nexmux/upstream"
)

// A reload down to one node leaves the node it removed draining: the
// uploads open there may finish for an hour. A follow-up whose tag is
// missing or fails its check is asked about as with several nodes, the
// removed node included (README: Askable), not sent to the one node
// listed, which never opened the session and answers 404.
func TestReloadToOneNodeAsksTheRemovedNodeForAnUntaggedUpload(t *testing.T) {
	for _, tc := range []struct{ name, tag string }{{"absent", ""}, {"tampered", "AAAAAAAAAAAAAAAAAAAAAAAA"}} {
		t.Run(tc.name, func(t *testing.T) {
			_, nodes := haCluster(t, 2)
			urls := nodeURLs(nodes)
			addr, up := haProxyURLs(t, io.Discard, 0, haRepo, urls...)
			u, tagged := openUpload(t, addr, up)
			var kept string
			for i, n := range nodes {
				if n.Addr() != tagged.Host {
					kept = urls[i]
				}
			}
			spec, err := upstream.ParseSpec([]string{kept}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := up.Set().Update(spec); err != nil {
				t.Fatal(err)
			}
			// The tagged follow-up still reaches the removed node.
			if resp, body := sendAuth(t, addr, http.MethodGet, u.RequestURI()); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("tagged upload status after the reload: %s %s", resp.Status, body)
			}
			p := u.Path
			if tc.tag != "" {
				p += "?" + upstream.TagParam + "=" + tc.tag
			}
			if resp, body := sendAuth(t, addr, http.MethodGet, p); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("upload status with its tag %s, on the removed node that holds it: %s %s", tc.name, resp.Status, body)
			}
		})
	}
}
