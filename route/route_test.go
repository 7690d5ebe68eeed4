package route

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func mustBuild(tb testing.TB, spec Spec) *Table {
	tb.Helper()
	tab, err := Build(spec)
	if err != nil {
		tb.Fatalf("Build: %v", err)
	}
	return tab
}

func lookupTable(tb testing.TB) *Table {
	return mustBuild(tb, Spec{
		Routes: []string{
			"registry.example.com=exact",
			"*.example.com=wild",
			"*.b.example.com=wild-b",
			"team-a.b.example.com=team-a",
			"*.Other.ORG.=other",
		},
		Passthrough: []string{"git.example.com=10.0.0.5:443"},
		Ports:       []string{"8082=port-8082"},
		Default:     "fallback",
	})
}

func TestLookupHost(t *testing.T) {
	tab := lookupTable(t)
	for _, tc := range []struct {
		host string
		want string // route key, "" for nil
	}{
		// exact, in every spelling a ClientHello or Host header may use
		{"registry.example.com", "registry.example.com"},
		{"REGISTRY.Example.Com", "registry.example.com"},
		{"registry.example.com.", "registry.example.com"},
		{"registry.example.com:443", "registry.example.com"},
		{"Registry.Example.com.:8443", "registry.example.com"},
		// exact beats wildcard
		{"team-a.b.example.com", "team-a.b.example.com"},
		{"TEAM-A.b.example.com:5000", "team-a.b.example.com"},
		// wildcard, most specific wins, several levels under it
		{"x.example.com", "*.example.com"},
		{"x.y.example.com", "*.example.com"},
		{"b.example.com", "*.example.com"},
		{"x.b.example.com", "*.b.example.com"},
		{"deep.x.b.example.com", "*.b.example.com"},
		{"team-b.b.example.com", "*.b.example.com"},
		{"A.OTHER.org", "*.other.org"},
		{"a.other.org.:443", "*.other.org"},
		// passthrough routes live in the same name space
		{"git.example.com", "git.example.com"},
		// a wildcard does not cover its own apex or the TLD
		{"example.com", ""},
		{"other.org", ""},
		{"com", ""},
		{"registry.example.org", ""},
		// only one trailing dot is ignored
		{"registry.example.com..", ""},
		// no name, odd names, IP literals: nil, never a panic
		{"", ""},
		{".", ""},
		{"..", ""},
		{":443", ""},
		{":", ""},
		{"[", ""},
		{"]", ""},
		{"[::1]", ""},
		{"[::1]:443", ""},
		{"::1", ""},
		{"fe80::1", ""},
		{"[fe80::1%25eth0]:8443", ""},
		{"10.0.0.1", ""},
		{"10.0.0.1:443", ""},
		{"\x00", ""},
	} {
		r := tab.LookupHost(tc.host)
		got := ""
		if r != nil {
			got = r.Key
		}
		if got != tc.want {
			t.Errorf("LookupHost(%q) = %q, want %q", tc.host, got, tc.want)
		}
	}
	// Garbage a Host header may carry: any answer, but no panic.
	for _, h := range []string{"[2001:db8::1].example.com", "[::1", "::]", "a:b:c", "%", ".:.", "*.example.com", "\xff.example.com"} {
		_ = tab.LookupHost(h)
	}
	if r := tab.LookupHost("git.example.com"); r == nil || r.Passthrough != "10.0.0.5:443" {
		t.Errorf("passthrough route = %v", r)
	}
	if r := tab.LookupPort(8082); r == nil || r.Key != ":8082" || r.Target.Pull != "port-8082" {
		t.Errorf("LookupPort(8082) = %v", r)
	}
	for _, p := range []int{0, -1, 8081, 8443, 65536} {
		if r := tab.LookupPort(p); r != nil {
			t.Errorf("LookupPort(%d) = %v, want nil", p, r)
		}
	}
	if d := tab.Default(); d == nil || d.Key != "default" || d.Target.Pull != "fallback" {
		t.Errorf("Default() = %v", d)
	}
	if !tab.HasPorts() {
		t.Error("HasPorts() = false with a --port route")
	}
	noPorts, err := Build(Spec{Routes: []string{"a.example.com=team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	if noPorts.HasPorts() || (*Table)(nil).HasPorts() {
		t.Error("HasPorts() = true without port routes")
	}
}

func TestNilAndZeroTable(t *testing.T) {
	for name, tab := range map[string]*Table{"nil": nil, "zero": {}} {
		if r := tab.LookupHost("a.example.com"); r != nil {
			t.Errorf("%s: LookupHost = %v", name, r)
		}
		if r := tab.LookupHost("x.example.com:443"); r != nil {
			t.Errorf("%s: LookupHost = %v", name, r)
		}
		if r := tab.LookupPort(8082); r != nil {
			t.Errorf("%s: LookupPort = %v", name, r)
		}
		if r := tab.Default(); r != nil {
			t.Errorf("%s: Default = %v", name, r)
		}
		if tab.Len() != 0 || len(tab.Routes()) != 0 || len(tab.Ports()) != 0 {
			t.Errorf("%s: not empty", name)
		}
	}
}

func TestCanonicalHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a.example.com", "a.example.com"},
		{"A.Example.COM", "a.example.com"},
		{"a.example.com.", "a.example.com"},
		{"a.example.com:443", "a.example.com"},
		{"A.EXAMPLE.COM.:8443", "a.example.com"},
		{"[::1]", "[::1]"},
		{"[::1]:443", "[::1]"},
		{"[FE80::1]:443", "[fe80::1]"},
		{"", ""},
	} {
		if got := CanonicalHost(tc.in); got != tc.want {
			t.Errorf("CanonicalHost(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestIsHostName(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	name253 := label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 61)
	for name, want := range map[string]bool{
		"a": true, "a.example.com": true, "A.Example.COM": true, "xn--bcher-kva.example": true,
		"a_b.example.com": true, "_dmarc.example.com": true, "a-b--c.example.com": true,
		"0.example.com": true, "10.0.0.1": true, label63 + ".example.com": true, name253: true,

		"": false, ".": false, ".example.com": false, "a..example.com": false, "a.example.com.": false,
		label63 + "a.example.com": false, name253 + "b": false, "-a.example.com": false,
		"a-.example.com": false, "a.-.com": false, "bücher.example": false, "\xff.example": false,
		"a b.example": false, "a*b.example": false, "*.example.com": false, "a/b.example": false,
		"%41.example": false, "a\x00b.example": false, "a\x01b.example": false, "a.example.com:443": false,
		"[::1]": false, "::1": false, "a\\.example": false, "a+b.example": false, "a~b.example": false,
	} {
		if got := IsHostName(name); got != want {
			t.Errorf("IsHostName(%q) = %v, want %v", name, got, want)
		}
	}
}

// A name no host can have matches no route, however a wildcard would
// otherwise take it; a server name with a port is such a name, where a Host
// header's port is cut off.
func TestNoHostNameRoutesNowhere(t *testing.T) {
	tab := mustBuild(t, Spec{Routes: []string{"team-a.example.com=team-a", "*.example.com=wild"}})
	for _, name := range []string{
		strings.Repeat("a.", 125) + "example.com", strings.Repeat("a", 64) + ".example.com",
		"bücher.example.com", "\xff.example.com", "a b.example.com", "*.example.com", "a..example.com",
		".example.com", "-a.example.com", "a-.example.com", "[x].example.com",
	} {
		if r := tab.LookupHost(name); r != nil {
			t.Errorf("LookupHost(%q) = %v, want nil", name, r)
		}
		if r := tab.LookupServerName(name); r != nil {
			t.Errorf("LookupServerName(%q) = %v, want nil", name, r)
		}
	}
	for name, want := range map[string]string{
		"team-a.example.com": "team-a.example.com", "TEAM-A.example.com": "team-a.example.com",
		"x.example.com": "*.example.com", "a_b.example.com": "*.example.com",
		"xn--bcher-kva.example.com": "*.example.com",
	} {
		for _, r := range []*Route{tab.LookupHost(name), tab.LookupServerName(name)} {
			if r == nil || r.Key != want {
				t.Errorf("%q routed to %v, want %s", name, r, want)
			}
		}
	}
	if r := tab.LookupHost("team-a.example.com:443"); r == nil || r.Key != "team-a.example.com" {
		t.Errorf("Host team-a.example.com:443 routed to %v", r)
	}
	for _, name := range []string{"team-a.example.com:443", "x.example.com:1", "x.example.com:"} {
		if r := tab.LookupServerName(name); r != nil {
			t.Errorf("LookupServerName(%q) = %v, want nil", name, r)
		}
	}
}

// TestLookupHostAllocs: the lookup runs once per connection and once per
// request (Host check); it must not allocate for names already in canonical
// (lowercase) form, whether they hit an exact route, a wildcard, or nothing.
func TestLookupHostAllocs(t *testing.T) {
	tab := lookupTable(t)
	for _, host := range []string{
		"registry.example.com",
		"registry.example.com:443",
		"registry.example.com.",
		"x.y.b.example.com",
		"deep.x.b.example.com:8443",
		"nothing.example.org",
		"[::1]:443",
		"",
	} {
		var r *Route
		n := testing.AllocsPerRun(100, func() { r = tab.LookupHost(host) })
		_ = r
		if n != 0 {
			t.Errorf("LookupHost(%q): %v allocations, want 0", host, n)
		}
		if n := testing.AllocsPerRun(100, func() { r = tab.LookupServerName(host) }); n != 0 {
			t.Errorf("LookupServerName(%q): %v allocations, want 0", host, n)
		}
	}
	n := testing.AllocsPerRun(100, func() { _ = tab.LookupPort(8082) })
	if n != 0 {
		t.Errorf("LookupPort: %v allocations, want 0", n)
	}
}

// TestTargetRepo walks the Registry API calls real clients make on each flow
// through a split target (group for reads, hosted for writes).
func TestTargetRepo(t *testing.T) {
	const (
		group  = "team-a"
		hosted = "team-a-hosted"
		dgst   = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
	)
	split := Target{Pull: group, Push: hosted}
	for _, tc := range []struct {
		flow, method, path, query, want string
	}{
		// docker push / crane push / containerd push
		{"push: ping", http.MethodGet, "/v2/", "", group},
		{"push: token for push", http.MethodGet, "/v2/token", "account=alice&scope=repository%3Aapp%3Apush%2Cpull&service=https%3A%2F%2Fteam-a.example.com%2Fv2%2Ftoken", hosted},
		{"push: token for push, unencoded", http.MethodGet, "/v2/token", "scope=repository:app:pull,push&service=x", hosted},
		{"push: token, second scope pushes", http.MethodGet, "/v2/token", "scope=repository%3Abase%3Apull&scope=repository%3Aapp%3Apull%2Cpush", hosted},
		{"push: token, all actions", http.MethodGet, "/v2/token", "scope=repository%3Aapp%3A%2A", hosted},
		{"push: blob exists?", http.MethodHead, "/v2/app/blobs/" + dgst, "", hosted},
		{"push: blob exists? nested name", http.MethodHead, "/v2/org/team/app/blobs/" + dgst, "", hosted},
		{"push: start upload", http.MethodPost, "/v2/app/blobs/uploads/", "", hosted},
		{"push: cross-repo mount", http.MethodPost, "/v2/app/blobs/uploads/", "mount=" + dgst + "&from=base%2Falpine", hosted},
		{"push: monolithic upload", http.MethodPost, "/v2/app/blobs/uploads/", "digest=sha256%3A4f53", hosted},
		{"push: upload status", http.MethodGet, "/v2/app/blobs/uploads/0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f", "", hosted},
		{"push: chunk", http.MethodPatch, "/v2/app/blobs/uploads/0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f", "_state=abc", hosted},
		{"push: finish upload", http.MethodPut, "/v2/app/blobs/uploads/0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f", "_state=abc&digest=sha256%3A4f53", hosted},
		{"push: cancel upload", http.MethodDelete, "/v2/app/blobs/uploads/0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f", "", hosted},
		{"push: manifest", http.MethodPut, "/v2/app/manifests/1.0", "", hosted},
		{"push: delete manifest", http.MethodDelete, "/v2/app/manifests/" + dgst, "", hosted},
		{"push: delete blob", http.MethodDelete, "/v2/app/blobs/" + dgst, "", hosted},
		// docker pull / containerd pull / crane pull
		{"pull: ping", http.MethodGet, "/v2", "", group},
		{"pull: token without scope (docker login)", http.MethodGet, "/v2/token", "account=alice&client_id=docker&offline_token=true&service=x", group},
		{"pull: token for pull", http.MethodGet, "/v2/token", "scope=repository%3Aapp%3Apull&service=x", group},
		{"pull: token for pull of an image whose name says push", http.MethodGet, "/v2/token", "scope=repository%3Apushgateway%3Apull&service=x", group},
		{"pull: token for pull, unencoded push in name", http.MethodGet, "/v2/token", "scope=repository:team/push-tools:pull", group},
		{"pull: resolve (containerd HEADs first)", http.MethodHead, "/v2/app/manifests/latest", "", group},
		{"pull: manifest", http.MethodGet, "/v2/app/manifests/latest", "", group},
		{"pull: manifest by digest", http.MethodGet, "/v2/app/manifests/" + dgst, "", group},
		{"pull: blob", http.MethodGet, "/v2/app/blobs/" + dgst, "", group},
		{"pull: image named blobs, HEAD manifest", http.MethodHead, "/v2/org/blobs/manifests/latest", "", group},
		{"pull: image named blobs/uploads, GET manifest", http.MethodGet, "/v2/blobs/uploads/manifests/1", "", group},
		{"pull: tags", http.MethodGet, "/v2/app/tags/list", "n=100&last=1.0", group},
		{"pull: catalog", http.MethodGet, "/v2/_catalog", "n=50", group},
		{"pull: v1 search", http.MethodGet, "/v1/search", "q=app", group},
		{"pull: CORS preflight", http.MethodOptions, "/v2/app/manifests/latest", "", group},
		// containerd asks the realm with an OAuth2 form POST first (scope in
		// the body), then GET: a pull's must not depend on hosted.
		{"pull: containerd token POST", http.MethodPost, "/v2/token", "", group},
	} {
		if got := split.Repo(tc.method, tc.path, tc.query); got != tc.want {
			t.Errorf("%s: Repo(%s %s?%s) = %s, want %s", tc.flow, tc.method, tc.path, tc.query, got, tc.want)
		}
		single := Target{Pull: "one", Push: "one"}
		if got := single.Repo(tc.method, tc.path, tc.query); got != "one" {
			t.Errorf("%s: single-repo target chose %q", tc.flow, got)
		}
	}
}

func TestTargetOwns(t *testing.T) {
	split := Target{Pull: "team-a", Push: "team-a-hosted"}
	for repo, want := range map[string]bool{"team-a": true, "team-a-hosted": true, "team-b": false, "": false, "Team-A": false, "team-a/": false} {
		if split.Owns(repo) != want {
			t.Errorf("Owns(%q) = %v, want %v", repo, !want, want)
		}
	}
}

func benchTable(b *testing.B, n int) *Table {
	routes := make([]string, 0, 2*n)
	for i := range n {
		routes = append(routes,
			fmt.Sprintf("team-%05d.example.com=team-%05d", i, i),
			fmt.Sprintf("*.team-%05d.wild.example.com=wild-%05d", i, i))
	}
	return mustBuild(b, Spec{Routes: routes})
}

func BenchmarkLookupHost(b *testing.B) {
	for _, n := range []int{1, 10000} {
		tab := benchTable(b, n)
		last := n - 1
		for _, c := range []struct{ name, host string }{
			{"exact", fmt.Sprintf("team-%05d.example.com", last)},
			{"exact-port", fmt.Sprintf("team-%05d.example.com:443", last)},
			{"wildcard", fmt.Sprintf("app.team-%05d.wild.example.com", last)},
			{"wildcard-deep", fmt.Sprintf("a.b.c.team-%05d.wild.example.com", last)},
			{"miss", "nothing.example.org"},
		} {
			b.Run(fmt.Sprintf("routes=%d/%s", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if tab.LookupHost(c.host) == nil && c.name != "miss" {
						b.Fatal("no route")
					}
				}
			})
		}
	}
}

// BenchmarkIsHostName is the scan every server name and Host header
// lookup makes: a typical name, and the longest there may be.
func BenchmarkIsHostName(b *testing.B) {
	label63 := strings.Repeat("a", 63)
	for _, c := range []struct{ name, host string }{
		{"typical", "team-00042.registry.example.com"},
		{"longest", label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 61)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.host)))
			for b.Loop() {
				if !IsHostName(c.host) {
					b.Fatal("not a host name")
				}
			}
		})
	}
}
