package l7

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/fixtures"
)

// A context path written with escapes of unreserved characters ("/%6Eexus"
// for "/nexus") is the context path Nexus names in its Locations: an upload
// opened through it gets its Location back on nexmux's own path, tagged,
// with one node or with a second written plainly, and every request and
// probe reaches the nodes in the one normalised form.
func TestContextPathWithEscapesServesUploads(t *testing.T) {
	for _, count := range []int{1, 2} {
		t.Run(strconv.Itoa(count), func(t *testing.T) {
			_, nodes := haCluster(t, count, func(c *fixtures.Config) {
				c.ContextPath = "/nexus"
				c.LocationStyle = fixtures.LocationRelativePrefix
			})
			urls := []string{nodes[0].URL() + "/%6Eexus"}
			if count == 2 {
				urls = append(urls, nodes[1].URL()+"/nexus")
			}
			addr, up := haProxyURLs(t, io.Discard, 0, haRepo, urls...)
			u, tagged := openUpload(t, addr, up)
			if !strings.HasPrefix(u.Path, "/v2/app/blobs/uploads/") || tagged == nil {
				t.Fatalf("%v: upload Location %s, want /v2/app/blobs/uploads/<uuid> with a valid tag", urls, u)
			}
			resp, body := sendAuth(t, addr, http.MethodGet, u.RequestURI())
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("%v: status of the upload: %s %s", urls, resp.Status, body)
			}
			for _, n := range nodes {
				for _, rq := range n.Requests() {
					if !strings.HasPrefix(rq.RawPath, "/nexus/") {
						t.Errorf("%v: node %s got %s %s, want the context path written /nexus", urls, n.Addr(), rq.Method, rq.RawPath)
					}
				}
			}
		})
	}
}
