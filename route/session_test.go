package route

import (
	"net/http"
	"strconv"
	"strings"
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
		// the referrers tag schema's tag for dgst
		referrers = "sha256-4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
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
		// reads in a push session still read through the group, but for
		// the referrers tag schema's list ("sha256-<hex>"), which the
		// session reads to write back
		{"push session: GET blob", http.MethodGet, "/v2/app/blobs/" + dgst, AuthBearerPush, group},
		{"push session: GET manifest", http.MethodGet, "/v2/app/manifests/1", AuthBearerPush, group},
		{"push session: GET manifest by digest", http.MethodGet, "/v2/app/manifests/" + dgst, AuthBearerPush, group},
		{"push session: GET referrers tag", http.MethodGet, "/v2/app/manifests/" + referrers, AuthBearerPush, hosted},
		{"push session: GET sha512 referrers tag", http.MethodGet, "/v2/app/manifests/sha512-" + strings.Repeat("0f", 64), AuthBearerPush, hosted},
		{"push session: GET short sha256- tag", http.MethodGet, "/v2/app/manifests/sha256-4f53cda1", AuthBearerPush, group},
		{"push session: GET upper-case sha256- tag", http.MethodGet, "/v2/app/manifests/" + strings.ToUpper(referrers), AuthBearerPush, group},
		{"pull session: GET referrers tag", http.MethodGet, "/v2/app/manifests/" + referrers, AuthBearer, group},
		{"basic: GET referrers tag", http.MethodGet, "/v2/app/manifests/" + referrers, AuthBasic, group},
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

// TestPickPushSessionPerImage: a push token may also grant pull on other
// images (oras cp's one token for source and destination, docker's mount
// source): its mark lists the images it pushes to, and only their
// existence checks go to hosted.
func TestPickPushSessionPerImage(t *testing.T) {
	split := Target{Pull: "team-a", Push: "team-a-hosted"}
	const dgst = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
	const referrers = "sha256-4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
	list := PushList("scope=repository%3Alibrary%2Fbase%3Apull&scope=repository%3Ateam%2Fbase%3Apull%2Cpush")
	if !ValidPushList(list) || len(list) != pushKeyLen {
		t.Fatalf("PushList = %q, want one entry", list)
	}
	for _, tc := range []struct {
		method, path, pushed, want string
	}{
		{http.MethodHead, "/v2/library/base/manifests/3", list, "team-a"},
		{http.MethodHead, "/v2/library/base/blobs/" + dgst, list, "team-a"},
		{http.MethodHead, "/v2/team/base/manifests/3", list, "team-a-hosted"},
		{http.MethodHead, "/v2/team/base/manifests/" + dgst, list, "team-a-hosted"},
		{http.MethodHead, "/v2/team/base/blobs/" + dgst, list, "team-a-hosted"},
		{http.MethodHead, "/v2/team/base/blobs/uploads/0b1c", list, "team-a-hosted"},
		{http.MethodPut, "/v2/library/base/manifests/3", list, "team-a-hosted"},
		{http.MethodHead, "/v2/", list, "team-a-hosted"},
		{http.MethodGet, "/v2/team/base/manifests/" + referrers, list, "team-a-hosted"},
		{http.MethodGet, "/v2/library/base/manifests/" + referrers, list, "team-a"},
		{http.MethodGet, "/v2/team/base/manifests/3", list, "team-a"},
		{http.MethodGet, "/v2/library/base/manifests/3", list, "team-a"},
		{http.MethodGet, "/v2/team/base/blobs/" + dgst, list, "team-a"},
		// A mark without a list pushes to every image.
		{http.MethodHead, "/v2/library/base/manifests/3", "", "team-a-hosted"},
	} {
		r := Request{Method: tc.method, Path: tc.path, Auth: AuthBearerPush, Pushed: tc.pushed}
		if got := split.Pick(r); got != tc.want {
			t.Errorf("Pick(%s %s, pushed %q) = %s, want %s", tc.method, tc.path, tc.pushed, got, tc.want)
		}
	}
}

// The per-image check runs on every HEAD of a push session: it allocates
// nothing.
func TestPickPushSessionAllocatesNothing(t *testing.T) {
	split := Target{Pull: "team-a", Push: "team-a-hosted"}
	r := Request{Method: http.MethodHead, Path: "/v2/team/base/blobs/sha256:4f53", Auth: AuthBearerPush,
		Pushed: PushList("scope=repository:library/base:pull&scope=repository:other:push&scope=repository:team/base:push")}
	var got string
	if n := testing.AllocsPerRun(100, func() { got = split.Pick(r) }); n != 0 || got != "team-a-hosted" {
		t.Errorf("Pick = %s with %v allocations, want team-a-hosted with none", got, n)
	}
}

func TestPushList(t *testing.T) {
	app, base := pushKey("app"), pushKey("base")
	for _, tc := range []struct{ query, want string }{
		{"scope=repository%3Aapp%3Apull%2Cpush", string(app[:])},
		{"scope=repository:app:push+repository:base:*&scope=repository:app:pull,push", string(app[:]) + string(base[:])},
		{"scope=repository(plugin):app:push", string(app[:])},
		{"scope=repository:app:pull&scope=registry:catalog:*", ""},
		{"%73cope=repository%3Abase%3Apush", string(base[:])},
	} {
		if got := PushList(tc.query); got != tc.want || !ValidPushList(got) {
			t.Errorf("PushList(%q) = %q, want %q", tc.query, got, tc.want)
		}
	}
	var many []string
	for i := range maxPushed + 1 {
		many = append(many, "scope=repository:app"+strconv.Itoa(i)+":push")
	}
	if got := PushList(strings.Join(many, "&")); got != "" {
		t.Errorf("%d pushed images: %q, want a list-less mark", maxPushed+1, got)
	}
	// FNV-1a 64 of "a", as hash/fnv computes it.
	if k := pushKey("a"); string(k[:]) != "-af63dc4c8601ec8c" {
		t.Errorf("pushKey(a) = %s", k[:])
	}
	for _, bad := range []string{"-", "-0123456789abcdeF", "x0123456789abcdef", "-0123456789abcdef-", strings.Repeat("-0123456789abcdef", maxPushed+1)} {
		if ValidPushList(bad) {
			t.Errorf("ValidPushList(%q) = true", bad)
		}
	}
}

// A scope with no colon ("scope=repository") named no actions and cut the
// scope at -1: a panic for any client's token request (FuzzRouteRequest,
// testdata b313590c43228738).
func TestPushScopeWithoutActions(t *testing.T) {
	for _, q := range []string{"scope=repository", "scope=repository(plugin)", "scope=repository+repository%3Aa%3Apull", "scope=repository%20"} {
		if pushScope(q) || PushList(q) != "" {
			t.Errorf("%q: a push scope", q)
		}
	}
	if !pushScope("scope=repository&scope=repository:a:push") {
		t.Error("a push scope after one without actions not seen")
	}
}
