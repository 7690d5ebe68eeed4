package daemon_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
)

// TestAffinityTagOfAnotherRouteReachesOnlyItsOwnRepository: an upload's
// Location (its uuid and signed affinity tag) from team-a, replayed on
// team-b's name, picks a node at most: the follow-up goes to team-b's own
// repository, which knows no such session, and Nexus's own form of
// team-a's upload URL is refused there. team-a's upload goes on unharmed.
func TestAffinityTagOfAnotherRouteReachesOnlyItsOwnRepository(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: config.Config{Route: []string{
		"team-a.nexmux.test=pull:team-a,push:team-a-hosted",
		"team-b.nexmux.test=pull:team-b,push:team-b-hosted",
	}}})
	cl := &http.Client{Transport: st.Transport(), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, host, target, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, "https://"+st.Host(host)+"/", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		path, query, _ := strings.Cut(target, "?")
		req.URL.Opaque = "//" + st.Host(host) + path
		req.URL.RawQuery = query
		req.SetBasicAuth(stack.User, stack.Password)
		if body != "" {
			req.Header.Set("Content-Type", "application/octet-stream")
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := do("POST", "team-a", "/v2/app/blobs/uploads/", "")
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusAccepted || err != nil || !strings.Contains(loc.RawQuery, "_nexmux=") {
		t.Fatalf("POST on team-a: %d, Location %q (%v): want 202 and a tagged Location", resp.StatusCode, resp.Header.Get("Location"), err)
	}
	uuid := loc.EscapedPath()[strings.LastIndex(loc.EscapedPath(), "/")+1:]
	for i, target := range []string{
		loc.EscapedPath() + "?" + loc.RawQuery,                                        // reaches team-b-hosted, not team-a's
		"/repository/team-a-hosted/v2/app/blobs/uploads/" + uuid + "?" + loc.RawQuery, // refused by nexmux
	} {
		for _, method := range []string{"PATCH", "GET", "PUT", "DELETE"} {
			st.Nexus.ResetRequests()
			q := ""
			if method == "PUT" {
				q = "&digest=sha256:" + strings.Repeat("0", 64)
			}
			resp := do(method, "team-b", target+q, "layer")
			if resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Errorf("%s %s on team-b: %d, want a 4xx", method, target+q, resp.StatusCode)
			}
			log := st.Nexus.Requests()
			if reached := len(log) != 0; reached != (i == 0) {
				t.Errorf("%s %s on team-b: %d request(s) at Nexus", method, target+q, len(log))
			}
			for _, r := range log {
				if r.Repo != "team-b-hosted" {
					t.Errorf("%s %s on team-b reached Nexus in %q: %s %s?%s", method, target+q, r.Repo, r.Method, r.RawPath, r.RawQuery)
				}
			}
		}
	}
	if resp := do("PATCH", "team-a", loc.EscapedPath()+"?"+loc.RawQuery, "layer"); resp.StatusCode != http.StatusAccepted {
		t.Errorf("PATCH on team-a after the replays: %d, want 202", resp.StatusCode)
	}
}
