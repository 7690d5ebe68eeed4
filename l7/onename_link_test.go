package l7

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/internal/testnet"
)

// On a split name, "/v2/..." reads go to the group. A page of the hosted
// repository's tag list or catalog (asked for in the
// "[ctx]/repository/<hosted>/" form, the only way a read reaches it there)
// must link to its next page in the hosted repository, as issue 7 asks
// of every Location/Link Nexus returns for the push repository: a "/v2/"
// link would read the rest from the group, which ignores paging.
// Found by paging team-a-hosted's tags through a split name with curl.
func TestSplitNameHostedPageLinksStayHosted(t *testing.T) {
	for _, style := range []fixtures.LocationStyle{fixtures.LocationRelative, fixtures.LocationRelativePrefix, fixtures.LocationAbsolute} {
		for _, ctx := range []string{"", "/nexus"} {
			t.Run(style.String()+ctx, func(t *testing.T) {
				s, nodes := haCluster(t, 1, func(c *fixtures.Config) {
					c.ContextPath, c.LocationStyle = ctx, style
					c.Repos = []fixtures.Repo{
						{Name: "team-a-hosted", Type: fixtures.Hosted, Online: true, ForceBasicAuth: true},
						{Name: "team-a", Type: fixtures.Group, Members: []string{"team-a-hosted"}, Online: true, ForceBasicAuth: true},
					}
				})
				img, err := random.Image(64, 1)
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range []string{"app", "app2"} {
					if err := s.Seed("team-a-hosted", n, "1", img); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.TagManifest("team-a-hosted", "app", "1", "2"); err != nil {
					t.Fatal(err)
				}
				logs := &testnet.Buffer{}
				urls := nodeURLs(nodes)
				for i := range urls {
					urls[i] += ctx
				}
				addr, _ := haProxyURLs(t, logs, 0, "pull:team-a,push:team-a-hosted", urls...)
				prefix := ctx + "/repository/team-a-hosted"
				for _, tc := range []struct{ first, field, want string }{
					{prefix + "/v2/app/tags/list?n=1", "tags", "2"},
					{prefix + "/v2/_catalog?n=1", "repositories", "app2"},
				} {
					req := teamRequest(addr, http.MethodGet, tc.first, nil)
					req.SetBasicAuth(haUser, haPass)
					resp, _ := sendRequest(t, req)
					link := resp.Header.Get("Link")
					start, end := strings.IndexByte(link, '<'), strings.IndexByte(link, '>')
					if resp.StatusCode != http.StatusOK || start < 0 || end < start {
						t.Fatalf("%s: %d, Link %q\n%s", tc.first, resp.StatusCode, link, logs)
					}
					next, err := url.Parse(link[start+1 : end])
					if err != nil {
						t.Fatal(err)
					}
					if !strings.HasPrefix(next.Path, prefix+"/v2/") {
						t.Errorf("%s: next page %q leaves the hosted repository (%s/v2/... wanted)", tc.first, link, prefix)
					}
					req = teamRequest(addr, http.MethodGet, next.RequestURI(), nil)
					req.SetBasicAuth(haUser, haPass)
					resp, body := sendRequest(t, req)
					var page map[string]any
					_ = json.Unmarshal([]byte(body), &page)
					got, _ := page[tc.field].([]any)
					if resp.StatusCode != http.StatusOK || len(got) != 1 || got[0] != tc.want {
						t.Errorf("%s: next page %s: %d %s, want only %q", tc.first, next.RequestURI(), resp.StatusCode, body, tc.want)
					}
				}
			})
		}
	}
}
