package daemon_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// Nexus answers some errors with its own text or HTML page instead of a
// Registry API error: an unknown repository, an offline one, a routing
// rule's block, a servlet error page. docker prints such a body raw ("error
// parsing HTTP 404 response body: invalid character '<' ..."), so nexmux
// hands the client a Registry API JSON error with the same status and
// Nexus's words. A HEAD's answer stays without a body.
func TestNexusErrorPagesBecomeRegistryErrors(t *testing.T) {
	const page = "<!DOCTYPE html>\n<html><head><title>500 - Sonatype Nexus Repository</title></head><body><h1>Error</h1><p>java.lang.IllegalStateException</p></body></html>\n"
	cfg := teamRoutes()
	cfg.Route = append(cfg.Route, "ghost.nexmux.test=no-such-repo")
	st := stack.Start(t, stack.Options{Config: cfg, Upstreams: func(nexusURL string) []string {
		// Nexus's servlet error page for one image name; the rest is the
		// fixture's.
		target, _ := url.Parse(nexusURL)
		rest := httputil.NewSingleHostReverseProxy(target)
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/v2/broken/") {
				w.Header().Set("Content-Type", "text/html;charset=iso-8859-1")
				w.WriteHeader(http.StatusInternalServerError)
				io.WriteString(w, page)
				return
			}
			rest.ServeHTTP(w, r)
		}))
		t.Cleanup(front.Close)
		return []string{front.URL}
	}})
	st.Nexus.SetOnline("team-b", false)
	cl := &http.Client{Transport: st.Transport()}
	for _, c := range []struct {
		host, path string
		status     int
		code, word string // the error's code, and a word of Nexus's message
	}{
		{"ghost", "/v2/app/manifests/1", http.StatusNotFound, "NAME_UNKNOWN", "not found"},
		{"team-b", "/v2/app/manifests/1", http.StatusServiceUnavailable, "UNAVAILABLE", "offline"},
		{"team-a", "/v2/broken/app/manifests/1", http.StatusInternalServerError, "UNAVAILABLE", "Sonatype Nexus Repository"},
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			req, _ := http.NewRequest(method, "https://"+st.Host(c.host)+c.path, nil)
			req.SetBasicAuth(stack.User, stack.Password)
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			what := method + " " + c.host + c.path
			if resp.StatusCode != c.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("%s: %d %q, want %d application/json", what, resp.StatusCode, resp.Header.Get("Content-Type"), c.status)
			}
			if method == http.MethodHead {
				if len(body) != 0 {
					t.Errorf("%s: a body of %d bytes", what, len(body))
				}
				continue
			}
			var e struct {
				Errors []struct{ Code, Message string }
			}
			if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != c.code || !strings.Contains(e.Errors[0].Message, c.word) {
				t.Errorf("%s: body %q, want one %s error saying %q", what, body, c.code, c.word)
			}
			if strings.Contains(string(body), "<") {
				t.Errorf("%s: the page's markup reached the client: %s", what, body)
			}
		}
	}
	// A registry client shows the code and Nexus's words.
	_, err := remote.Image(ref(t, st.Host("team-b")+"/app:1"), st.Remote(ctxT(t))...)
	if err == nil || !strings.Contains(err.Error(), "UNAVAILABLE") || !strings.Contains(err.Error(), "offline") {
		t.Errorf("pull from the offline repository: %v, want UNAVAILABLE with Nexus's message", err)
	}
}
