package route

import (
	"net/http"
	"testing"
)

// TestPickBySession walks the existence checks real clients make through a
// split target, with the session their credentials reveal (traces:
// fixtures/testdata/traces).
func TestPickBySession(t *testing.T) {
	const (
		group  = "team-a"
		hosted = "team-a-hosted"
		dgst   = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
	)
	split := Target{Pull: group, Push: hosted}
	for _, tc := range []struct {
		flow         string
		method, path string
		auth         Auth
		want         string
	}{
		// containerd/BuildKit push: HEAD manifests/<tag or digest> before each PUT.
		{"ctr push: manifest exists?", http.MethodHead, "/v2/lib/app/manifests/1", AuthBearerPush, hosted},
		{"ctr push: child manifest exists?", http.MethodHead, "/v2/lib/app/manifests/" + dgst, AuthBearerPush, hosted},
		{"ctr push: blob exists?", http.MethodHead, "/v2/lib/app/blobs/" + dgst, AuthBearerPush, hosted},
		// crane/docker/skopeo push
		{"crane push: blob exists?", http.MethodHead, "/v2/app/blobs/" + dgst, AuthBearerPush, hosted},
		{"push: manifest PUT", http.MethodPut, "/v2/app/manifests/1", AuthBearerPush, hosted},
		{"push: mount", http.MethodPost, "/v2/app/blobs/uploads/", AuthBearerPush, hosted},
		// reads in a push session still read through the group
		{"push session: GET blob", http.MethodGet, "/v2/app/blobs/" + dgst, AuthBearerPush, group},
		{"push session: GET manifest", http.MethodGet, "/v2/app/manifests/1", AuthBearerPush, group},
		// pulls with a pull token: everything from the group
		{"ctr pull: resolve", http.MethodHead, "/v2/lib/app/manifests/1", AuthBearer, group},
		{"ctr FetchByDigest: blob HEAD", http.MethodHead, "/v2/lib/app/blobs/" + dgst, AuthBearer, group},
		{"pull: GET blob", http.MethodGet, "/v2/app/blobs/" + dgst, AuthBearer, group},
		{"pull: upload status is still the hosted one's", http.MethodGet, "/v2/app/blobs/uploads/0b1c", AuthBearer, hosted},
		{"pull token: upload status by HEAD", http.MethodHead, "/v2/app/blobs/uploads/0b1c", AuthBearer, hosted},
		{"basic: upload status by HEAD", http.MethodHead, "/v2/app/blobs/uploads/0b1c", AuthBasic, hosted},
		// Basic auth (force-basic) and anonymous: the method/path rule
		{"basic: blob HEAD is a push check", http.MethodHead, "/v2/app/blobs/" + dgst, AuthBasic, hosted},
		{"basic: manifest HEAD resolves through the group", http.MethodHead, "/v2/app/manifests/1", AuthBasic, group},
		{"none: blob HEAD", http.MethodHead, "/v2/app/blobs/" + dgst, AuthNone, hosted},
		{"none: manifest HEAD", http.MethodHead, "/v2/app/manifests/1", AuthNone, group},
		{"basic: write", http.MethodPatch, "/v2/app/blobs/uploads/0b1c", AuthBasic, hosted},
	} {
		r := Request{Method: tc.method, Path: tc.path, Auth: tc.auth}
		if got := split.Pick(r); got != tc.want {
			t.Errorf("%s: Pick(%s %s, %s) = %s, want %s", tc.flow, tc.method, tc.path, tc.auth, got, tc.want)
		}
		if got := (Target{Pull: "one", Push: "one"}).Pick(r); got != "one" {
			t.Errorf("%s: single-repo target chose %q", tc.flow, got)
		}
	}
}

func TestTokenPush(t *testing.T) {
	for _, tc := range []struct {
		method, path, query string
		want                bool
	}{
		{http.MethodGet, "/v2/token", "scope=repository%3Aapp%3Apull%2Cpush&service=x", true},
		{http.MethodGet, "/v2/token", "scope=repository%3Abase%3Apull&scope=repository%3Aapp%3Apush%2Cpull", true},
		{http.MethodGet, "/v2/token", "scope=repository%3Aapp%3Apull", false},
		{http.MethodGet, "/v2/token", "account=alice&client_id=docker&offline_token=true", false},
		{http.MethodPost, "/v2/token", "scope=repository%3Aapp%3Apush", false},
		{http.MethodGet, "/v2/app/manifests/token", "scope=repository%3Aapp%3Apush", false},
		// Jetty decodes parameter names: Nexus reads these as scope.
		{http.MethodGet, "/v2/token", "%73cope=repository%3Aapp%3Apush", true},
		{http.MethodGet, "/v2/token", "sc%6Fpe=repository:app:pull,push", true},
		// Space-separated scopes in one parameter, the space written '+'
		// (url.Values.Encode): the push is not the last one.
		{http.MethodGet, "/v2/token", "scope=repository:app:push+repository:base:pull", true},
		// Only repository scopes write: crane catalog's "*" is a read.
		{http.MethodGet, "/v2/token", "scope=registry%3Acatalog%3A%2A", false},
		{http.MethodGet, "/v2/token", "scope=registry:catalog:*+repository:app:pull", false},
		{http.MethodGet, "/v2/token", "scope=registry:catalog:*&scope=repository:app:*", true},
		{http.MethodGet, "/v2/token", "scope=repository(plugin):app:pull,push", true},
	} {
		if got := TokenPush(tc.method, tc.path, tc.query); got != tc.want {
			t.Errorf("TokenPush(%s %s?%s) = %v, want %v", tc.method, tc.path, tc.query, got, tc.want)
		}
	}
}
