package l7

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// A /v2/ ping or a token request that repoFallback sends on to the next
// repository gives the first answer's Nexus place back before it takes
// another: with one place on the node (and with a client's share of two),
// the retry is answered, not refused as busy after the 2 s queue time, and
// every place is free after.
func TestRepoFallbackRetryTakesOnePlace(t *testing.T) {
	for _, c := range []struct {
		name              string
		maxConns, perClnt int
	}{{"one place", 1, 0}, {"share of two", 2, 4}} {
		t.Run(c.name, func(t *testing.T) {
			node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/repository/group/") {
					w.WriteHeader(http.StatusServiceUnavailable)
					io.WriteString(w, "Repository is offline")
					return
				}
				if r.Method == http.MethodPost {
					b, _ := io.ReadAll(r.Body)
					io.WriteString(w, `{"token":"t","form":"`+string(b)+`"}`)
					return
				}
				io.WriteString(w, "{}")
			})
			addr, up := haProxyConfig(t, io.Discard, c.maxConns, "pull:group,push:hosted",
				Config{MaxRequestsPerClient: c.perClnt}, "http://"+node.addr)
			for i := 0; i < 2; i++ {
				resp, b := send(t, addr, http.MethodGet, "/v2/", nil)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("GET /v2/ #%d: %s %q", i, resp.Status, b)
				}
				form := url.Values{"grant_type": {"password"}, "service": {"s"}}.Encode()
				req := teamRequest(addr, http.MethodPost, "/v2/token", strings.NewReader(form))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, b = sendRequest(t, req)
				if resp.StatusCode != http.StatusOK || !strings.Contains(b, "grant_type=password") {
					t.Fatalf("POST /v2/token #%d: %s %q", i, resp.Status, b)
				}
			}
			waitUntil(t, "every place free", func() bool {
				p, ok := up.pools.m.Load(node.addr)
				if !ok {
					return false
				}
				p.mu.Lock()
				defer p.mu.Unlock()
				return p.taken == 0 && len(p.held) == 0
			})
		})
	}
}
