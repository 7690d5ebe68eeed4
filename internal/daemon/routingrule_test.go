package daemon_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
)

// TestRoutingRulesSeeNoClientParameters: Nexus's routing rules (BLOCK
// mode on proxy repositories: "these Docker Hub images are not pulled")
// match the request path with its parameters appended, "<path>?k=v", as a
// whole (RoutingRuleHandler, String.matches). A parameter a matcher does
// not foresee, ?x=1 after an exact tag or ?x=/ after [^/]+, lets a blocked
// image through. Manifest and blob reads take no parameters, so nexmux
// sends them without any: what is blocked stays blocked, on a mirror name
// (anonymous, with the --mirror-auth-file credentials) as on a team's.
func TestRoutingRulesSeeNoClientParameters(t *testing.T) {
	cfg := config.Config{Route: []string{"team-a.nexmux.test=team-a"}}
	for _, m := range fixtures.Mirrors {
		cfg.Mirror = append(cfg.Mirror, mirrorHost+"/"+m.Remote+"="+m.Repo)
	}
	f := filepath.Join(t.TempDir(), "mirror-auth")
	if err := os.WriteFile(f, []byte(stack.User+":"+stack.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.MirrorAuthFile = f
	repos := append(fixtures.MirrorRepos(""), stack.TeamRepos("team-a")...)
	for i := range repos {
		switch repos[i].Name {
		case "dockerhub-proxy":
			repos[i].RoutingBlock = []string{"/v2/library/alpine/manifests/3", "/v2/library/alpine/manifests/sha256:[0-9a-f]{64}"}
		case "team-a-proxy":
			repos[i].RoutingBlock = []string{"/v2/library/base/manifests/[^/]+"}
		}
	}
	s := stack.Start(t, stack.Options{Config: cfg, Fixture: fixtures.Config{Repos: repos}})
	if err := s.Nexus.SeedMirrors(); err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Nexus.Seed("team-a-proxy", "library/base", "3", img); err != nil {
		t.Fatal(err)
	}
	dg := seeded(t, s, "dockerhub-proxy", "library/alpine:3")
	for _, q := range []string{"", "?x=1", "?x=/", "?ns=docker.io&x=1", "?a=1&b=2"} {
		for _, method := range []string{"GET", "HEAD"} {
			// docker.io/alpine is library/alpine to Docker, and to the rule.
			for _, p := range []string{"/v2/library/alpine/manifests/3", "/v2/library/alpine/manifests/" + dg, "/v2/docker.io/library/alpine/manifests/3",
				"/v2/docker.io/alpine/manifests/3", "/v2/alpine/manifests/" + dg, "/docker.io/v2/alpine/manifests/3"} {
				if resp, body := mirrorGet(t, s, method, p+q, false); resp.StatusCode != 403 {
					t.Errorf("mirror %s %s%s: %d %.100s, want the routing rule's 403", method, p, q, resp.StatusCode, body)
				}
			}
			// The group skips its blocked proxy member: 404.
			resp, body := do(t, s.Transport(), method, "https://team-a.nexmux.test:"+itoa(s.Port)+"/v2/library/base/manifests/3"+q, nil)
			if resp.StatusCode != 404 {
				t.Errorf("team %s base:3%s: %d %.100s, want 404 (its only holder's rule blocks it)", method, q, resp.StatusCode, body)
			}
		}
	}
	// Parameters the registry API has still reach Nexus.
	if resp, body := mirrorGet(t, s, "GET", "/v2/library/alpine/tags/list?n=1", false); resp.StatusCode != 200 {
		t.Errorf("tags/list?n=1: %d %.100s", resp.StatusCode, body)
	}
	var sawN bool
	for _, r := range s.Nexus.Requests() {
		if r.RawQuery == "n=1" {
			sawN = true
		}
	}
	if !sawN {
		t.Error("tags/list's n did not reach Nexus")
	}
}

// blockedBase is team-a with image library/base:3 in its proxy member,
// which a routing rule BLOCKs (manifests and blobs by exact pattern), and
// the image's layer digest.
func blockedBase(t *testing.T) (*stack.Stack, v1.Hash) {
	t.Helper()
	repos := stack.TeamRepos("team-a")
	for i := range repos {
		if repos[i].Name == "team-a-proxy" {
			repos[i].RoutingBlock = []string{"/v2/library/base/manifests/[^/]+", "/v2/library/base/blobs/[^/]+"}
		}
	}
	s := stack.Start(t, stack.Options{Config: config.Config{Route: []string{"team-a.nexmux.test=team-a"}}, Fixture: fixtures.Config{Repos: repos}})
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Nexus.Seed("team-a-proxy", "library/base", "3", img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	return s, ld
}

// TestRoutingRulesSeeNoClientParametersInAnyEncoding: a client may spell
// the endpoint with percent-encoded letters ("manifest%73", "%62lobs");
// Jetty decodes them, so Nexus serves the manifest or blob read, and its
// routing rule sees the client's parameters: "?x=/" after an exact tag or
// [^/]+ lets a blocked image through. The parameters must go whatever the
// spelling of the path.
func TestRoutingRulesSeeNoClientParametersInAnyEncoding(t *testing.T) {
	s, ld := blockedBase(t)
	cl := &http.Client{Transport: s.Transport()}
	for _, p := range []string{
		"/v2/library/base/manifests/3", // the control: plain spelling
		"/v2/library/base/manifest%73/3",
		"/v2/library/base/%6Danifests/3",
		"/v2/library/base/manifest%2573/3",
		"/v2/library/base/blob%73/" + ld.String(),
		"/v2/library/base/%62lobs/" + ld.String(),
	} {
		for _, method := range []string{"GET", "HEAD"} {
			req, err := http.NewRequestWithContext(t.Context(), method, "https://"+s.Host("team-a"), nil)
			if err != nil {
				t.Fatal(err)
			}
			// Opaque keeps the path bytes exactly as written.
			req.URL.Opaque = "//" + s.Host("team-a") + p
			req.URL.RawQuery = "x=/"
			req.SetBasicAuth(stack.User, stack.Password)
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			// The group skips its blocked proxy member: 404. A spelling
			// Jetty does not decode to the endpoint is no read at all.
			if resp.StatusCode == http.StatusOK {
				t.Errorf("%s %s?x=/: %d, want the blocked image withheld (404)", method, p, resp.StatusCode)
			}
		}
	}
}

// A manifest or blob read with a '/' after its reference is no Registry
// API path; the fixture, like a lenient router, serves it, and the slash
// alone takes it past a routing rule's exact pattern. nexmux refuses it.
func TestRoutingRulesSeeNoTrailingSlash(t *testing.T) {
	s, ld := blockedBase(t)
	cl := &http.Client{Transport: s.Transport()}
	for _, p := range []string{"/v2/library/base/manifests/3/", "/v2/library/base/manifests/3//", "/v2/library/base/manifests/3%2F",
		"/v2/library/base/blobs/" + ld.String() + "/"} {
		for _, method := range []string{"GET", "HEAD"} {
			req, err := http.NewRequestWithContext(t.Context(), method, "https://"+s.Host("team-a"), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = "//" + s.Host("team-a") + p
			req.SetBasicAuth(stack.User, stack.Password)
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("%s %s: %d, want the blocked image withheld", method, p, resp.StatusCode)
			}
		}
	}
}
