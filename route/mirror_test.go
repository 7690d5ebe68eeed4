package route

import (
	"strings"
	"testing"
)

func TestCanonicalRegistry(t *testing.T) {
	for in, want := range map[string]string{
		"docker.io": "docker.io", "Docker.IO": "docker.io", "registry-1.docker.io": "docker.io",
		"INDEX.docker.io": "docker.io", "ghcr.io": "ghcr.io", "registry.corp.test:5000": "registry.corp.test:5000",
		"localhost": "localhost", "localhost:5000": "localhost:5000", "10.0.0.1:5000": "10.0.0.1:5000",
		"ghcr.io:443": "ghcr.io", "registry-1.docker.io:443": "docker.io", "GHCR.io:443": "ghcr.io", "ghcr.io:4430": "ghcr.io:4430",
		"ghcr.io.": "", "ghcr..io": "", "ghcr.io:0": "", "ghcr.io:05000": "", "ghcr.io:x": "",
		"": "", "a/b": "", "-x.io": "", "a b": "", "ghcr.io%2f": "",
		// A registry at an IPv6 literal, as the reference grammar writes
		// it (and containerd's ns= sends it): bracketed, canonical form.
		"[fd00::5]:5000": "[fd00::5]:5000", "[FD00:0::5]:5000": "[fd00::5]:5000", "[fd00::5]": "[fd00::5]",
		"[fd00::5]:443": "[fd00::5]", "[::1]:5000": "[::1]:5000",
		"fd00::5:5000": "", "::5:5000": "", "[fd00::5]:x": "", "[fd00::5]:05000": "", "[fd00::5%eth0]:5000": "",
		"[10.0.0.1]:5000": "", "[fd00::5": "", "fd00::5]:5000": "", "[]:5000": "", "[fd00::5]5000": "",
	} {
		got, ok := CanonicalRegistry(in)
		if got != want || ok != (want != "") {
			t.Errorf("CanonicalRegistry(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
}

func TestBuildMirrors(t *testing.T) {
	tab, err := Build(Spec{
		Routes: []string{"team.example.com=team"},
		Mirrors: []string{"Mirror.example.com/ghcr.io=ghcr-proxy", "mirror.example.com/index.docker.io=hub",
			"*.mirrors.example.com/quay.io=quay"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := tab.LookupHost("mirror.example.com")
	if r == nil || r.Mirror == nil || r.Kind != KindSNI || r.Target != (Target{}) {
		t.Fatalf("mirror route: %+v", r)
	}
	if d := r.Mirror.Default(); d.Registry != "docker.io" || d.Repo != "hub" {
		t.Errorf("default %+v, want docker.io=hub", d)
	}
	if repo, ok := r.Mirror.Repo("ghcr.io"); !ok || repo != "ghcr-proxy" || !r.Mirror.Owns("hub") || r.Mirror.Owns("team") {
		t.Errorf("Repo/Owns wrong: %v", r.Mirror)
	}
	if w := tab.LookupHost("x.mirrors.example.com"); w == nil || w.Mirror.Default().Repo != "quay" {
		t.Errorf("wildcard mirror: %+v", w)
	}
	if got := r.String(); got != "mirror.example.com => mirror ghcr.io=ghcr-proxy, docker.io=hub" {
		t.Errorf("String() = %q", got)
	}

	_, err = Build(Spec{
		Routes:      []string{"team.example.com=team"},
		Passthrough: []string{"git.example.com=10.0.0.1:443"},
		Mirrors: []string{"team.example.com/docker.io=hub", "git.example.com/ghcr.io=g",
			"m.example.com/docker.io=a", "m.example.com/registry-1.docker.io=b",
			"m.example.com/gh cr.io=x", "m.example.com/quay.io=", "noslash=x", "m.example.com/ghcr.io"},
	})
	if err == nil {
		t.Fatal("bad mirrors accepted")
	}
	for _, want := range []string{"team.example.com is already routed", "git.example.com is already routed", "docker.io is already mirrored by a",
		"\"gh cr.io\" is not a registry name", "empty repository name", "\"noslash=x\": want HOST/REGISTRY=REPO", "\"m.example.com/ghcr.io\": want"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}
