package daemon_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
)

// A Nexus before 3.77 writes its absolute URLs from its Base URL, which
// names the reverse proxy users already had, with that proxy's path: here
// https://repo.corp.example/ for a Nexus whose context path is /nexus (the
// proxy maps / to /nexus/). An upload Location and a paging Link there
// still name the route's own repository, so they map to the public name,
// and a push and a paged tag listing go through.
func TestBaseURLWithAnotherPathPrefixStillMaps(t *testing.T) {
	st := stack.Start(t, stack.Options{
		Config:  teamRoutes(),
		Fixture: fixtures.Config{ContextPath: "/nexus", LocationStyle: fixtures.LocationRelativePrefix},
		Upstreams: func(nexusURL string) []string {
			target, _ := url.Parse(nexusURL)
			target.Path = ""
			rest := httputil.NewSingleHostReverseProxy(target)
			baseURL := func(v string) string {
				return strings.ReplaceAll(v, "/nexus/repository/", "https://repo.corp.example/repository/")
			}
			rest.ModifyResponse = func(resp *http.Response) error {
				for _, k := range []string{"Location", "Link"} {
					if v := resp.Header.Get(k); v != "" {
						resp.Header.Set(k, baseURL(v))
					}
				}
				return nil
			}
			front := httptest.NewServer(rest)
			t.Cleanup(front.Close)
			return []string{front.URL + "/nexus"}
		},
	})
	where := st.Host("team-a-push") + "/app"
	img := pushImage(t, st, where+":1")
	pullVerify(t, st, where+":1", img)
	pushImage(t, st, where+":2")
	tags, err := remote.List(ref(t, where).Context(), append(st.Remote(ctxT(t)), remote.WithPageSize(1))...)
	if err != nil || len(tags) != 2 {
		t.Errorf("paged tag list: %v %v, want both tags", tags, err)
	}
}
