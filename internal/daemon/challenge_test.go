package daemon_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
)

// Nexus's challenge is `Bearer realm="<base><ctx>/repository/R/v2/token",
// service="<the same>"`. Clients hand service back on the token call and
// show it in errors; left as Nexus wrote it, it gives away the repository
// behind the name and the context path (or, with a front that builds the
// base from its own address, Nexus's address). Both parameters must name
// the public token endpoint, for a GET and for a HEAD's body-less 401, in
// every variant of the base.
func TestChallengeNamesOnlyThePublicTokenEndpoint(t *testing.T) {
	for _, ctxPath := range []string{"", "/nexus"} {
		for _, null := range []bool{false, true} {
			t.Run(fmt.Sprintf("ctx=%q/null=%v", ctxPath, null), func(t *testing.T) {
				st := stack.Start(t, stack.Options{
					Fixture: fixtures.Config{ContextPath: ctxPath, LocationStyle: fixtures.LocationAbsolute, NullSchemeWithoutProto: null},
					Config:  confinedRoutes(),
				})
				cl := &http.Client{Transport: st.Transport()}
				for _, c := range []struct{ host, method, path string }{
					{"team-a", http.MethodGet, "/v2/"},
					{"team-a", http.MethodHead, "/v2/app/manifests/1"},
					{"team-a", http.MethodHead, "/v2/app/blobs/sha256:" + strings.Repeat("0", 64)},
					{"team-b", http.MethodGet, "/v2/app/tags/list"},
				} {
					req, _ := http.NewRequest(c.method, "https://"+st.Host(c.host)+c.path, nil)
					resp, err := cl.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					want := `Bearer realm="https://` + st.Host(c.host) + `/v2/token",service="https://` + st.Host(c.host) + `/v2/token"`
					if got := resp.Header.Get("Www-Authenticate"); resp.StatusCode != http.StatusUnauthorized || got != want {
						t.Errorf("%s %s on %s: %d %q\nwant 401 %q", c.method, c.path, c.host, resp.StatusCode, got, want)
					}
					if c.method == http.MethodHead && len(body) != 0 {
						t.Errorf("HEAD %s: a body of %d bytes", c.path, len(body))
					}
				}
				// A client that takes the challenge as it comes logs in and
				// pushes and pulls.
				img := pushImage(t, st, st.Host("team-a")+"/chal/app:1")
				pullVerify(t, st, st.Host("team-a")+"/chal/app:1", img)
			})
		}
	}
}
