package l7

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// A ping or token request by a path that names its repository
// ("/repository/group/v2/", as Nexus hands such URLs out) is that
// repository's: only /v2/ itself, which names none, is sent on to the
// name's other repository when one is offline (reqState.anyRepo).
func TestRepoFallbackOnlyWhereNoRepositoryIsNamed(t *testing.T) {
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/repository/group/") {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "Repository is offline")
			return
		}
		io.WriteString(w, "{}")
	})
	addr, _ := haProxyConfig(t, io.Discard, 0, "pull:group,push:hosted", Config{}, "http://"+node.addr)
	if resp, b := send(t, addr, http.MethodGet, "/v2/", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ with the group offline: %s %q, want the hosted repository's 200", resp.Status, b)
	}
	for _, path := range []string{"/repository/group/v2/", "/repository/group/v2/token"} {
		if resp, b := send(t, addr, http.MethodGet, path, nil); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("GET %s with the group offline: %s %q, want the group's 503", path, resp.Status, b)
		}
	}
}
