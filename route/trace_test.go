package route

import (
	"bufio"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPickReplaysClientTraces replays the request sequences real clients
// sent through a split name (recorded by scripts/e2e-onename.sh into
// fixtures/testdata/traces) through Pick. A request's session is what its
// client held at that point: nothing before its first token (Nexus answered
// 401), else the latest token whose scope names the request's image, marked
// (with the list of images it pushes to) when any of its scopes had push.
func TestPickReplaysClientTraces(t *testing.T) {
	files, err := filepath.Glob("../fixtures/testdata/traces/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no traces: %v", err)
	}
	split := Target{Pull: "team-a", Push: "team-a-hosted"}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			session := map[string]Auth{}  // image name -> token held for it
			pushed := map[string]string{} // image name -> that token's mark list
			n := 0
			sc := bufio.NewScanner(fh)
			for sc.Scan() {
				line := sc.Text()
				// "HEAD /repository/team-a-hosted/v2/app/blobs/sha256:… -> 200 repo=team-a-hosted"
				var method, target, status, chosen string
				fields := strings.Fields(line)
				if len(fields) != 5 || fields[2] != "->" {
					t.Fatalf("bad trace line %q", line)
				}
				method, target, status, chosen = fields[0], fields[1], fields[3], strings.TrimPrefix(fields[4], "repo=")
				path, query, _ := strings.Cut(target, "?")
				rest, ok := strings.CutPrefix(path, "/repository/"+chosen)
				if !ok {
					t.Fatalf("line %q: path not under its repository", line)
				}
				auth := AuthNone
				if status != "401" {
					auth = session[imageOf(rest)]
				}
				if got := split.Pick(Request{Method: method, Path: rest, Query: query, Auth: auth, Pushed: pushed[imageOf(rest)]}); got != chosen {
					t.Errorf("%s (session %s): Pick = %s, recorded %s", line, auth, got, chosen)
				}
				if IsTokenPath(rest) && status == "200" {
					// One mark for the whole token, listing the
					// images it pushes to (l7/tokenmark.go).
					for name, a := range tokenScopes(query) {
						session[name], pushed[name] = a, ""
						if pushScope(query) {
							session[name], pushed[name] = AuthBearerPush, PushList(query)
						}
					}
				}
				n++
			}
			if n == 0 {
				t.Fatal("empty trace")
			}
		})
	}
}

// imageOf returns the image name of a Registry API path ("/v2/a/b/blobs/x").
func imageOf(path string) string {
	p := strings.TrimPrefix(path, "/v2/")
	for _, ep := range []string{"/blobs/", "/manifests/", "/tags/"} {
		if i := strings.LastIndex(p, ep); i >= 0 {
			return p[:i]
		}
	}
	return ""
}

// tokenScopes maps each image a token request's scopes name to the session
// the token gives it.
func tokenScopes(query string) map[string]Auth {
	out := map[string]Auth{}
	q, _ := url.ParseQuery(query)
	for _, s := range q["scope"] {
		for scope := range strings.FieldsSeq(s) {
			parts := strings.Split(scope, ":")
			if len(parts) != 3 {
				continue
			}
			a := AuthBearer
			if pushScope("scope=" + url.QueryEscape(scope)) {
				a = AuthBearerPush
			}
			out[parts[1]] = a
		}
	}
	return out
}
