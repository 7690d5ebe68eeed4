package l7

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// An HTTP/1 request gives its per-client place back as serve returns,
// from serve's one deferred function (97d5488): answered by Nexus or
// refused by nexmux itself before Nexus is asked. With a share of one, a
// place not given back turns the client's next request into a 429.
func TestHTTP1RequestGivesItsClientPlaceBack(t *testing.T) {
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") })
	addr, _ := haProxyConfig(t, io.Discard, 0, "team-a", Config{MaxRequestsPerClient: 1}, "http://"+node.addr)
	for i := 0; i < 3; i++ {
		// Refused by admit: a method the registry does not use.
		resp, b := sendRequest(t, teamRequest(addr, "PROPFIND", "/v2/app/manifests/1", nil))
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.ProtoMajor != 1 {
			t.Fatalf("PROPFIND #%d: %s %s %q", i, resp.Proto, resp.Status, b)
		}
		for _, m := range []string{http.MethodHead, http.MethodGet} {
			resp, b = sendRequest(t, teamRequest(addr, m, "/v2/app/manifests/1", nil))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s #%d: %s %q", m, i, resp.Status, strings.TrimSpace(b))
			}
		}
	}
}
